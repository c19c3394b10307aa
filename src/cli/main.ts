// `petrel` command line: one subcommand per file.
import { Command, CommanderError } from 'commander';
import { registerBrokerCommand } from './broker.js';
import { registerPasswdCommand } from './passwd.js';
import { registerPubCommand } from './pub.js';
import { registerSubCommand } from './sub.js';
import { registerConnCommand } from './conn.js';
import { registerBenchCommand } from './bench.js';
import { registerConvertConfigCommand } from './convert-config.js';
import { EXIT } from './common-client.js';
import { PETREL_VERSION } from '../version.js';

export async function main(argv: string[]): Promise<void> {
  // --version only: -V is the subcommands' protocol version flag, as in mosquitto_pub.
  const program = new Command('petrel').description('Petrel: an MQTT 3.1 / 3.1.1 / 5.0 broker and client toolkit').version(PETREL_VERSION, '--version', 'print the version');
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
  registerConvertConfigCommand(program);
  await program.parseAsync(argv, { from: 'user' });
}
