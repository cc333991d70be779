// flt's document types, one file each: what a document holds, the base it starts from and what
// readers accept from it. Adding one: a file like audit.ts (kind, key purpose, shape, base),
// re-exported here.

export { DOC_SCHEMA } from './schema.js';
export * from './audit.js';
export * from './facts.js';
export * from './root.js';
export * from './admins.js';
export * from './desired.js';
export * from './outbox.js';
export * from './status.js';
