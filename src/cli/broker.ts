// `petrel broker`: starts the broker from defaults, a config file and flags (flags win).
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { pino, type Logger } from 'pino';
import { createBroker } from '../broker/broker.js';
import { ConfigError, loadConfigFile, validateConfig, type FileConfig } from '../config/config.js';

interface BrokerFlags {
  port?: string;
  host?: string;
  config?: string;
  logLevel?: string;
}

function makeLogger(level: string): Logger {
  // Readable lines in a terminal, JSON lines when piped (for log collectors).
  if (process.stdout.isTTY) {
    return pino({ level, transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } });
  }
  return pino({ level });
}

export function registerBrokerCommand(program: Command): void {
  program
    .command('broker')
    .description('start the MQTT broker (TCP 0.0.0.0:1883 by default)')
    .option('-p, --port <port>', 'TCP port to listen on')
    .option('-H, --host <host>', 'address to listen on')
    .option('-c, --config <file>', 'config file (JSON or YAML); default ./petrel.config.json|yaml when present')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent')
    .addHelpText('after', '\nExamples:\n  petrel broker\n  petrel broker --port 1884 --log-level debug\n  petrel broker -c petrel.config.yaml\n')
    .action(async (flags: BrokerFlags) => {
      let config: FileConfig;
      try {
        config = loadConfig(flags);
      } catch (err) {
        if (err instanceof ConfigError) {
          console.error(`petrel: config: ${err.message}`);
          process.exit(2);
        }
        throw err;
      }
      const { logLevel, ...options } = config;
      const logger = makeLogger(logLevel ?? 'info');
      const broker = createBroker({ ...options, logger });
      try {
        await broker.listen();
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        console.error(`petrel: cannot listen: ${e.code === 'EADDRINUSE' ? `address in use (${e.message.replace(/^.*EADDRINUSE:? ?/, '')}); is another broker running? use --port` : e.message}`);
        process.exit(1);
      }
      const stop = (signal: string) => {
        logger.info({ signal }, 'shutting down');
        broker.close().then(() => process.exit(0));
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
}

function loadConfig(flags: BrokerFlags): FileConfig {
  let file = flags.config;
  if (!file) file = ['petrel.config.json', 'petrel.config.yaml', 'petrel.config.yml'].find((f) => existsSync(f));
  const fromFile = file ? loadConfigFile(file) : {};
  const overrides: Record<string, unknown> = {};
  if (flags.port !== undefined) overrides.port = Number(flags.port);
  if (flags.host !== undefined) overrides.host = flags.host;
  if (flags.logLevel !== undefined) overrides.logLevel = flags.logLevel;
  const merged = validateConfig({ ...fromFile, ...overrides });
  if ((flags.port !== undefined || flags.host !== undefined) && merged.listeners) {
    throw new ConfigError('--port/--host cannot be combined with a config file that has "listeners"');
  }
  return merged;
}
