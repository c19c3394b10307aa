// `petrel` command line: one subcommand per file, loaded only when it is the one asked for, so that
// `petrel pub` does not pay for the broker, the config schema and YAML (start-up 0.24 s → see bench/cli-startup.sh).
import { Command, CommanderError } from 'commander';
import { PETREL_VERSION } from '../version.js';

/** Exit code of a bad command line (also EXIT.USAGE in common-client.ts, which is not loaded here). */
const USAGE = 2;

interface CommandEntry {
  description: string;
  register: () => Promise<(program: Command) => void>;
}

/** Every command: its one-line description (for `petrel --help`) and how to load it. */
export const COMMANDS: Record<string, CommandEntry> = {
  broker: {
    description: 'start the MQTT broker (TCP 0.0.0.0:1883 and WebSocket 0.0.0.0:8083/mqtt by default)',
    register: async () => (await import('./broker.js')).registerBrokerCommand,
  },
  passwd: {
    description: 'add, change (-D: delete) a user in a password file of salted scrypt hashes',
    register: async () => (await import('./passwd.js')).registerPasswdCommand,
  },
  pub: { description: 'publish a message to an MQTT broker', register: async () => (await import('./pub.js')).registerPubCommand },
  sub: { description: 'subscribe to topics and print the messages', register: async () => (await import('./sub.js')).registerSubCommand },
  conn: { description: 'diagnose a connection to a broker, step by step', register: async () => (await import('./conn.js')).registerConnCommand },
  bench: { description: 'load a broker: many clients publishing, subscribing or connecting (like emqtt-bench)', register: async () => (await import('./bench.js')).registerBenchCommand },
  'convert-config': {
    description: 'print a Mosquitto configuration (mosquitto.conf) as a Petrel config file (YAML)',
    register: async () => (await import('./convert-config.js')).registerConvertConfigCommand,
  },
};

export async function main(argv: string[]): Promise<void> {
  // --version only: -V is the subcommands' protocol version flag, as in mosquitto_pub.
  const program = new Command('petrel').description('Petrel: an MQTT 3.1 / 3.1.1 / 5.0 broker and client toolkit').version(PETREL_VERSION, '--version', 'print the version');
  // usage errors exit with 2 (help and version with 0); set before the subcommands so they inherit it
  program.exitOverride((err: CommanderError) => {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version') process.exit(0);
    process.exit(err.exitCode === 0 ? 0 : USAGE);
  });
  // `petrel help pub` is `petrel pub --help`, which needs pub's own options loaded
  if (argv[0] === 'help' && argv[1] !== undefined && Object.hasOwn(COMMANDS, argv[1])) argv = [argv[1], '--help'];
  const name = argv[0];
  const entry = name !== undefined && Object.hasOwn(COMMANDS, name) ? COMMANDS[name]! : undefined;
  if (entry) {
    (await entry.register())(program);
    const cmd = program.commands.find((c) => c.name() === name);
    if (cmd && (name === 'pub' || name === 'sub')) {
      // mosquitto's multi-word -D, its other spellings, profiles and unknown-flag suggestions
      const { prepareArguments } = await import('./argv.js');
      try {
        argv = [name, ...prepareArguments(cmd, argv.slice(1))];
      } catch (err) {
        // a profile that cannot be read or saved: a bad command line
        process.stderr.write(`petrel ${name}: ${(err as Error).message}\n`);
        process.exit(USAGE);
      }
    }
  } else {
    // `petrel`, `petrel --help`, a mistyped command: the list needs the descriptions only
    for (const [command, { description }] of Object.entries(COMMANDS)) program.command(command).description(description);
  }
  await program.parseAsync(argv, { from: 'user' });
}
