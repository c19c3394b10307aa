// `petrel` command line: one subcommand per file.
import { Command } from 'commander';
import { registerBrokerCommand } from './broker.js';

export async function main(argv: string[]): Promise<void> {
  const program = new Command('petrel').description('Petrel: an MQTT 3.1 / 3.1.1 / 5.0 broker and client toolkit');
  registerBrokerCommand(program);
  await program.parseAsync(argv, { from: 'user' });
}
