// `petrel broker`: starts the broker (owned by the broker layer).
import type { Command } from 'commander';

export function registerBrokerCommand(program: Command): void {
  program
    .command('broker')
    .description('start the MQTT broker')
    .action(() => {
      console.error('the broker is not implemented yet');
      process.exitCode = 1;
    });
}
