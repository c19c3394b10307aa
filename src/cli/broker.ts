// `petrel broker`: starts the broker from defaults, a config file and flags (flags win).
import type { Command } from 'commander';
import { createBroker } from '../server/broker.js';
import { ConfigError, formatConfig, resolveConfig, type FileConfig } from '../config/config.js';
import { createLogger, defaultLogFormat, LOG_FORMATS, type LogFormat } from '../runtime/logger.js';
import { tuneV8 } from '../runtime/v8-tuning.js';
import { applyHttpFlags, type HttpFlags } from '../http/cli.js';
import { withMqttsnPort } from '../mqttsn/cli.js';

interface BrokerFlags extends HttpFlags {
  port?: string;
  host?: string;
  config?: string;
  logLevel?: string;
  logFormat?: string;
  passwordFile?: string;
  aclFile?: string;
  anonymous?: boolean;
  printConfig?: string | boolean;
  mqttsnPort?: string;
}

export function registerBrokerCommand(program: Command): void {
  program
    .command('broker')
    .description('start the MQTT broker (TCP 0.0.0.0:1883 and WebSocket 0.0.0.0:8083/mqtt by default)')
    .option('-p, --port <port>', 'one TCP listener on this port (instead of the default listeners)')
    .option('-H, --host <host>', 'address of that TCP listener')
    .option('-c, --config <file>', 'config file (JSON or YAML); default ./petrel.config.json|yaml when present')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent')
    .option('--log-format <format>', 'pretty or json (default: pretty in a terminal, JSON lines otherwise)')
    .option('--password-file <file>', 'password file made with `petrel passwd`')
    .option('--acl-file <file>', 'ACL rule file (see docs/configuration.md)')
    .option('--no-anonymous', 'refuse clients without a username')
    .option('--http-port <port>', 'HTTP listener for /metrics, /health, /ready, the JSON API and the dashboard (docs/http-api.md)')
    .option('--http-host <host>', 'address of the HTTP listener (default 127.0.0.1)')
    .option('--http-token-file <file>', 'bearer token for /api/* (default: made in ./petrel-data/http-token)')
    .option('--print-config [format]', 'print the effective configuration (yaml or json) and exit')
    .option('--mqttsn-port <port>', 'also an MQTT-SN 1.2 gateway on this UDP port (see docs/mqtt-sn.md)')
    .addHelpText(
      'after',
      '\nConfiguration: file < PETREL_* environment variables (PETREL_MAX_QOS=1, PETREL_ACL__DEFAULT=deny) < flags.\n' +
        'SIGHUP reloads the password file, the ACL file and TLS certificates (they are also reloaded when they change), and the HTTP API token.\n' +
        '\nExamples:\n  petrel broker\n  petrel broker --port 1884 --log-level debug\n  petrel broker -c petrel.config.yaml --print-config\n',
    )
    .action(async (flags: BrokerFlags) => {
      let config: FileConfig;
      let logFormat: LogFormat;
      try {
        logFormat = parseLogFormat(flags.logFormat);
        config = loadConfig(flags);
        if (flags.mqttsnPort !== undefined) config = withMqttsnPort(config, flags.mqttsnPort);
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
      const logger = createLogger(logLevel ?? 'info', logFormat);
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
        logger.info('SIGHUP: reloading password file, ACL, certificates and the HTTP API token');
        running.reload();
      });
    });
}

function parseLogFormat(flag: string | undefined): LogFormat {
  if (flag === undefined) return defaultLogFormat();
  if (!(LOG_FORMATS as readonly string[]).includes(flag)) throw new ConfigError(`--log-format: must be pretty or json (got "${flag}")`);
  return flag as LogFormat;
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
  return applyHttpFlags(resolveConfig({ file: flags.config, flags: overrides }), flags);
}
