// `petrel` command line: one subcommand per file.
import { Command, CommanderError } from 'commander';
import { registerBrokerCommand } from './broker.js';
import { registerPasswdCommand } from './passwd.js';
import { registerPubCommand } from './pub.js';
import { registerSubCommand } from './sub.js';
import { registerConnCommand } from './conn.js';
import { registerBenchCommand } from './bench.js';
import { EXIT } from './common-client.js';

export async function main(argv: string[]): Promise<void> {
  const program = new Command('petrel').description('Petrel: an MQTT 3.1 / 3.1.1 / 5.0 broker and client toolkit');
  // usage errors exit with 2 (help and version with 0); set before the subcommands so they inherit it
  program.exitOverride((err: CommanderError) => {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version') process.exit(0);
    process.exit(err.exitCode === 0 ? 0 : EXIT.USAGE);
  });
  registerBrokerCommand(program);
  registerPasswdCommand(program);
  registerPubCommand(program);
  registerSubCommand(program);
  registerConnCommand(program);
  registerBenchCommand(program);
  await program.parseAsync(argv, { from: 'user' });
}
