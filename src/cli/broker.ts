// `petrel broker`: starts the broker from defaults, a config file and flags (flags win).
import type { Command } from 'commander';
import { pino, type Logger } from 'pino';
import { createBroker } from '../server/broker.js';
import { ConfigError, formatConfig, resolveConfig, type FileConfig } from '../config/config.js';
import { BufferedLogDestination } from '../runtime/log-destination.js';
import { tuneV8 } from '../runtime/v8-tuning.js';

interface BrokerFlags {
  port?: string;
  host?: string;
  config?: string;
  logLevel?: string;
  passwordFile?: string;
  aclFile?: string;
  anonymous?: boolean;
  printConfig?: string | boolean;
  dataDir?: string;
  storage?: string;
}

/** Where `petrel broker` keeps its data unless told otherwise (docs/storage.md). */
const DEFAULT_DATA_DIR = './petrel-data';

function makeLogger(level: string): Logger {
  // Readable lines in a terminal, JSON lines when piped (for log collectors).
  if (process.stdout.isTTY) {
    return pino({ level, transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true } } });
  }
  // Buffered: lines go out in writes of 64 KiB or every 200 ms, whichever comes first, and on exit
  // (one write() per line cost 20 % of the connection rate at 10k+ connections/s).
  const destination = new BufferedLogDestination(1);
  process.on('exit', () => destination.flushSync());
  return pino({ level }, destination);
}

export function registerBrokerCommand(program: Command): void {
  program
    .command('broker')
    .description('start the MQTT broker (TCP 0.0.0.0:1883 and WebSocket 0.0.0.0:8083/mqtt by default)')
    .option('-p, --port <port>', 'one TCP listener on this port (instead of the default listeners)')
    .option('-H, --host <host>', 'address of that TCP listener')
    .option('-c, --config <file>', 'config file (JSON or YAML); default ./petrel.config.json|yaml when present')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent')
    .option('--password-file <file>', 'password file made with `petrel passwd`')
    .option('--acl-file <file>', 'ACL rule file (see docs/configuration.md)')
    .option('--no-anonymous', 'refuse clients without a username')
    .option('--data-dir <dir>', `where sessions, queues and retained messages are kept (default ${DEFAULT_DATA_DIR})`)
    .option('--storage <type>', 'sqlite (durable, the default) or memory (nothing kept across restarts)')
    .option('--print-config [format]', 'print the effective configuration (yaml or json) and exit')
    .addHelpText(
      'after',
      '\nConfiguration: file < PETREL_* environment variables (PETREL_MAX_QOS=1, PETREL_ACL__DEFAULT=deny) < flags.\n' +
        'SIGHUP reloads the password file, the ACL file and TLS certificates (they are also reloaded when they change).\n' +
        '\nExamples:\n  petrel broker\n  petrel broker --port 1884 --log-level debug\n  petrel broker -c petrel.config.yaml --print-config\n',
    )
    .action(async (flags: BrokerFlags) => {
      let config: FileConfig;
      try {
        config = loadConfig(flags);
        if (flags.printConfig !== undefined) {
          const format = flags.printConfig === true ? 'yaml' : flags.printConfig;
          if (format !== 'yaml' && format !== 'json') throw new ConfigError('--print-config: format must be yaml or json');
          process.stdout.write(formatConfig(config, format));
          return;
        }
      } catch (err) {
        if (err instanceof ConfigError) {
          console.error(`petrel: config: ${err.message}`);
          process.exit(2);
        }
        throw err;
      }
      const { logLevel, memoryProfile, ...options } = config;
      tuneV8(memoryProfile ?? 'compact');
      const logger = makeLogger(logLevel ?? 'info');
      let broker;
      try {
        broker = createBroker({ ...options, logger });
        await broker.listen();
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        console.error(`petrel: cannot start: ${e.code === 'EADDRINUSE' ? `address in use (${e.message.replace(/^.*EADDRINUSE:? ?/, '')}); is another broker running? use --port` : e.message}`);
        process.exit(1);
      }
      const running = broker;
      const stop = (signal: string) => {
        logger.info({ signal }, 'shutting down');
        // A close that hangs or fails must not keep the process alive: exit regardless after 5 s.
        setTimeout(() => process.exit(1), 5000).unref();
        running.close().then(
          () => process.exit(0),
          (err: unknown) => {
            logger.error({ error: String(err) }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGHUP', () => {
        logger.info('SIGHUP: reloading password file, ACL and certificates');
        running.reload();
      });
    });
}

function loadConfig(flags: BrokerFlags): FileConfig {
  const overrides: Record<string, unknown> = {};
  if (flags.port !== undefined) {
    // A plain decimal port: "" (an unset $PORT), "0x10" or "1e3" must not quietly mean 0, 16 or 1000.
    const text = flags.port.trim();
    const port = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!(port <= 65535)) throw new ConfigError(`--port: must be a whole number from 0 to 65535 (got "${flags.port}")`);
    overrides.port = port;
  }
  if (flags.host !== undefined) overrides.host = flags.host;
  if (flags.logLevel !== undefined) overrides.logLevel = flags.logLevel;
  if (flags.passwordFile !== undefined) overrides.passwordFile = flags.passwordFile;
  if (flags.aclFile !== undefined) overrides.acl = { file: flags.aclFile };
  if (flags.anonymous === false) overrides.allowAnonymous = false;
  if (flags.storage !== undefined && flags.storage !== 'sqlite' && flags.storage !== 'memory') throw new ConfigError(`--storage: must be sqlite or memory (got "${flags.storage}")`);
  if (flags.storage !== undefined || flags.dataDir !== undefined) {
    overrides.storage = { ...(flags.storage !== undefined ? { type: flags.storage } : {}), ...(flags.dataDir !== undefined ? { dir: flags.dataDir } : {}) };
  }
  const config = resolveConfig({ file: flags.config, flags: overrides });
  // The command is durable by default (createBroker() for embedding is not): SQLite in ./petrel-data.
  config.storage = { type: 'sqlite', dir: DEFAULT_DATA_DIR, durability: 'process', ...config.storage };
  return config;
}
