// The activator the agent's configuration names (design §4), in its own file so that
// activator.ts (the interface every implementation imports) imports no implementation.

import { checkDeployConfig, type Activator, type DeployConfig } from './activator.js';
import { CommandActivator } from './command.js';
import { NixosActivator } from './nixos.js';
import { ProfileActivator } from './profile.js';

/** The configured activator, or undefined for `none` (the agent refuses with NO_ACTIVATOR). */
export function createActivator(config: DeployConfig): Activator | undefined {
  checkDeployConfig(config);
  switch (config.deployActivator) {
    case 'none':
      return undefined;
    case 'nixos':
      return new NixosActivator();
    case 'profile':
      return new ProfileActivator({
        profile: config.deployProfile!,
        command: config.deployCommand,
        nixStore: config.nixStore,
      });
    case 'command':
      return new CommandActivator({ command: config.deployCommand!, nixStore: config.nixStore });
  }
}
