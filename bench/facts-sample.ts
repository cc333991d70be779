// Realistic facts for the fleet benchmarks (restart.ts, fanin.ts): what a NixOS server's agent
// publishes, about 3 KB of JSON, different for every host. Deterministic in the host number, so
// fixtures built from it are the same on every run; no real collection cost is involved.

import { createHash } from 'node:crypto';
import { FACTS_SCHEMA_VERSION, type Facts } from '../src/facts/index.js';

const GiB = 2 ** 30;

/** Hex SHA-256 of `text`: stands in for store hashes, machine ids and MAC addresses. */
function hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The hostname of bench host `i`: `node-00042`. */
export function benchHostname(i: number): string {
  return `node-${String(i).padStart(5, '0')}`;
}

/** A nixos-facter-like excerpt: the part of `facter` that makes real documents a few KB. */
function facter(i: number, h: string): Record<string, unknown> {
  return {
    version: 1,
    system: 'x86_64-linux',
    virtualisation: i % 3 === 0 ? 'kvm' : 'none',
    hardware: {
      bios: { vendor: 'American Megatrends International, LLC.', version: `2.${i % 9}.1` },
      cpu: [{ vendor_name: 'AuthenticAMD', family: 25, model: 1, cores: 8, siblings: 16 }],
      disk: [
        {
          model: 'SAMSUNG MZQL21T9HCJR-00A07',
          unix_device_name: '/dev/nvme0n1',
          serial: h.slice(0, 14),
        },
        {
          model: 'SAMSUNG MZQL21T9HCJR-00A07',
          unix_device_name: '/dev/nvme1n1',
          serial: h.slice(14, 28),
        },
      ],
      network_controller: [
        {
          vendor: 'Intel Corporation',
          device: 'Ethernet Controller X710 for 10GbE SFP+',
          driver: 'i40e',
        },
      ],
      memory: [0, 1, 2, 3].map((slot) => ({ slot, size: 32 * GiB, type: 'DDR4', speed: 3200 })),
      storage_controller: [
        {
          vendor: 'Samsung Electronics Co Ltd',
          device: 'NVMe SSD Controller PM9A1',
          driver: 'nvme',
        },
        {
          vendor: 'Advanced Micro Devices, Inc. [AMD]',
          device: 'FCH SATA Controller',
          driver: 'ahci',
        },
      ],
      usb_controller: [
        {
          vendor: 'Advanced Micro Devices, Inc. [AMD]',
          device: 'Starship USB 3.0 Host Controller',
          driver: 'xhci_hcd',
        },
      ],
    },
    smbios: {
      system: { manufacturer: 'Supermicro', product: 'AS -1114S-WN10RT', uuid: h.slice(28, 64) },
    },
  };
}

/** Facts of bench host `i`, stamped `collectedAt`. JSON.stringify gives about 3 KB. */
export function sampleFacts(i: number, collectedAt = new Date().toISOString()): Facts {
  const h = hex(`flt-bench/host/${i}`);
  const mac = (k: number) =>
    `02:${h
      .slice(k, k + 10)
      .match(/../g)!
      .join(':')}`;
  const system = `/nix/store/${h.slice(0, 32)}-nixos-system-${benchHostname(i)}-25.05.20250612.4f3e2a1`;
  return {
    schema: FACTS_SCHEMA_VERSION,
    collectedAt,
    hostname: benchHostname(i),
    os: {
      id: 'nixos',
      name: 'NixOS',
      version: '25.05 (Warbler)',
      versionId: '25.05',
      prettyName: 'NixOS 25.05 (Warbler)',
      buildId: '25.05.20250612.4f3e2a1',
    },
    kernel: {
      name: 'Linux',
      release: '6.12.34',
      version: '#1-NixOS SMP PREEMPT_DYNAMIC Thu Jun 19 10:00:00 UTC 2025',
    },
    arch: 'x86_64',
    cpus: { model: 'AMD EPYC 7313P 16-Core Processor', count: 32 },
    memory: { totalBytes: 128 * GiB - 3_276_800 * (i % 7) },
    disks: [
      { mount: '/', fs: 'ext4', totalBytes: 1_920_383_410_176 },
      { mount: '/boot', fs: 'vfat', totalBytes: 1_071_624_192 },
      { mount: '/var/lib', fs: 'zfs', totalBytes: 3_840_766_820_352 },
      { mount: '/var/lib/postgresql', fs: 'zfs', totalBytes: 3_840_766_820_352 },
      { mount: '/srv/backup', fs: 'xfs', totalBytes: 7_681_533_640_704 },
    ],
    network: [
      {
        name: 'enp65s0f0',
        mac: mac(0),
        addresses: [
          `10.${(i >> 8) & 255}.${i & 255}.10/16`,
          `2001:db8:${(i & 0xffff).toString(16)}::10/64`,
          `fe80::${h.slice(10, 14)}:${h.slice(14, 18)}/64`,
        ],
      },
      { name: 'enp65s0f1', mac: mac(10), addresses: [`172.16.${i & 255}.10/24`] },
      { name: 'wg0', addresses: [`100.64.${(i >> 8) & 255}.${i & 255}/32`] },
    ],
    machineIdHash: hex(`flt/v1/machine-id:${i}`),
    nix: { version: '2.28.3' },
    nixos: {
      version: '25.05.20250612.4f3e2a1',
      currentSystem: system,
      bootedSystem: system,
      rebootRequired: false,
    },
    facter: facter(i, h),
    notes: [],
  };
}
