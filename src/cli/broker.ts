// `petrel broker`: starts the broker from defaults, a config file and flags (flags win). What a command does
// not need is not loaded: the modules come in with dynamic imports once the flags are read.
import { accessSync, constants } from 'node:fs';
import type { Command } from 'commander';
import type { FileConfig } from '../config/config.js';
import type { HttpFlags } from '../http/cli.js';

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
  dataDir?: string;
  storage?: string;
  cluster?: string;
  nodeName?: string;
  workers?: string;
}

/** Exit code of a configuration the broker cannot start with (a bad command line too). */
const CONFIG_EXIT = 2;

/** Where `petrel broker` keeps its data unless told otherwise (docs/storage.md). */
const DEFAULT_DATA_DIR = './petrel-data';

export function registerBrokerCommand(program: Command): void {
  program
    .command('broker')
    .description('start the MQTT broker (TCP 0.0.0.0:1883 and WebSocket 0.0.0.0:8083/mqtt by default)')
    .option('-p, --port <port>', 'one TCP listener on this port (instead of the default listeners, or those of the config file)')
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
    .option('--mqttsn-port <port>', 'also an MQTT-SN 1.2 gateway on this UDP port (see docs/mqtt-sn.md)')
    .option('--data-dir <dir>', `where sessions, queues and retained messages are kept (default ${DEFAULT_DATA_DIR})`)
    .option('--storage <type>', 'sqlite (durable, the default) or memory (nothing kept across restarts)')
    .option('--cluster <url>', 'run as a node of a cluster on this Redis, e.g. redis://127.0.0.1:6379 (see docs/cluster.md)')
    .option('--node-name <name>', 'this node\'s name in the cluster (default: host name and process id)')
    .option('--workers <n>', 'run N nodes of the cluster in N processes sharing the listeners (needs --cluster)')
    .option('--print-config [format]', 'print the effective configuration (yaml or json) and exit')
    .addHelpText(
      'after',
      '\nConfiguration: file < PETREL_* environment variables (PETREL_MAX_QOS=1, PETREL_ACL__DEFAULT=deny) < flags.\n' +
        'SIGHUP reloads the password file, the ACL file and TLS certificates (they are also reloaded when they change) and the HTTP API token,\n' +
        "and re-reads the config file: a TLS listener's cert, key, ca and crl apply to new connections; other changes need a restart.\n" +
        '\nExamples:\n  petrel broker\n  petrel broker --port 1884 --log-level debug\n  petrel broker -c petrel.config.yaml --print-config\n',
    )
    .action(async (flags: BrokerFlags) => {
      const [{ ConfigError, findConfigFile, formatConfig, resolveConfig }, { applyHttpFlags }, { withMqttsnPort }, { createLogger, defaultLogFormat, LOG_FORMATS }] = await Promise.all([
        import('../config/config.js'),
        import('../http/cli.js'),
        import('../mqttsn/cli.js'),
        import('../runtime/logger.js'),
      ]);
      let config: FileConfig;
      const warnings: string[] = [];
      const file = findConfigFile(flags.config);
      const configFailure = (message: string): never => {
        console.error(`petrel: config: ${message}`);
        process.exit(CONFIG_EXIT);
      };
      const load = (): FileConfig => {
        let c = applyHttpFlags(resolveConfig({ file: flags.config, flags: overrides(flags, ConfigError), warnings }), flags);
        if (flags.mqttsnPort !== undefined) c = withMqttsnPort(c, flags.mqttsnPort);
        // The command is durable by default (createBroker() for embedding is not): SQLite in ./petrel-data.
        c.storage = { type: 'sqlite', dir: c.dataDir ?? DEFAULT_DATA_DIR, durability: 'process', ...c.storage };
        return c;
      };
      let logFormat = defaultLogFormat();
      try {
        if (flags.logFormat !== undefined) {
          if (!(LOG_FORMATS as readonly string[]).includes(flags.logFormat)) throw new ConfigError(`--log-format: must be pretty or json (got "${flags.logFormat}")`);
          logFormat = flags.logFormat as typeof logFormat;
        }
        config = load();
        if (flags.printConfig !== undefined) {
          const format = flags.printConfig === true ? 'yaml' : flags.printConfig;
          if (format !== 'yaml' && format !== 'json') throw new ConfigError('--print-config: format must be yaml or json');
          process.stdout.write(formatConfig(config, format));
          return;
        }
        // Files the broker reads at start: missing ones are config errors like the others (exit 2), said before any log line.
        if (config.passwordFile !== undefined) checkReadable(config.passwordFile, 'passwordFile', 'password file', ConfigError);
        if (config.acl?.file !== undefined) checkReadable(config.acl.file, 'acl.file', 'ACL file', ConfigError);
      } catch (err) {
        if (err instanceof ConfigError) return configFailure(err.message);
        throw err;
      }
      const [{ createBroker, DEFAULT_LISTENERS }, { tuneV8 }, { PemFileError }] = await Promise.all([import('../server/broker.js'), import('../runtime/v8-tuning.js'), import('../transport/tls.js')]);
      let { logLevel, memoryProfile, ...options } = config;
      tuneV8(memoryProfile ?? 'compact');
      const logger = createLogger(logLevel ?? 'info', logFormat);
      if (flags.workers !== undefined) {
        const count = /^\d+$/.test(flags.workers.trim()) ? Number(flags.workers) : NaN;
        if (!(count >= 1 && count <= 256)) return configFailure(`--workers: must be a whole number from 1 to 256 (got "${flags.workers}")`);
        if (options.cluster === undefined) return configFailure('--workers: needs --cluster (the workers are nodes of one cluster on Redis)');
        const workers = await import('../cluster/workers.js');
        if (workers.isPrimary()) {
          workers.runPrimary(count, logger);
          return;
        }
        options = workers.workerOptions(options, DEFAULT_LISTENERS);
      }
      if (file !== undefined) logger.info({ file, found: flags.config === undefined ? 'in the working directory' : undefined }, 'config file');
      for (const w of warnings) logger.warn(w);
      let broker;
      try {
        broker = createBroker({ ...options, logger });
        const { watchPlainPortMistakes } = await import('./broker-logs.js');
        watchPlainPortMistakes(broker, logger);
        await broker.listen();
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        // A certificate or key the config names that cannot be used is a config error too.
        if (err instanceof ConfigError || e.cause instanceof PemFileError || err instanceof PemFileError) return configFailure(e.message);
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
        if (file !== undefined) {
          void import('./broker-reload.js').then(({ applyConfigChanges }) => {
            applyConfigChanges(config, load, logger, file);
            running.reload();
          });
        } else running.reload();
      });
    });
}

function checkReadable(file: string, key: string, what: string, ConfigError: new (message: string) => Error): void {
  try {
    accessSync(file, constants.R_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new ConfigError(`${key}: cannot read the ${what} ${file} (${code === 'ENOENT' ? 'no such file' : code})`);
  }
}

function overrides(flags: BrokerFlags, ConfigError: new (message: string) => Error): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (flags.port !== undefined) {
    // A plain decimal port: "" (an unset $PORT), "0x10" or "1e3" must not quietly mean 0, 16 or 1000.
    const text = flags.port.trim();
    const port = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!(port <= 65535)) throw new ConfigError(`--port: must be a whole number from 0 to 65535 (got "${flags.port}")`);
    out.port = port;
  }
  if (flags.host !== undefined) out.host = flags.host;
  if (flags.logLevel !== undefined) out.logLevel = flags.logLevel;
  if (flags.passwordFile !== undefined) out.passwordFile = flags.passwordFile;
  if (flags.aclFile !== undefined) out.acl = { file: flags.aclFile };
  if (flags.anonymous === false) out.allowAnonymous = false;
  if (flags.storage !== undefined && flags.storage !== 'sqlite' && flags.storage !== 'memory') throw new ConfigError(`--storage: must be sqlite or memory (got "${flags.storage}")`);
  if (flags.storage !== undefined || flags.dataDir !== undefined) {
    out.storage = { ...(flags.storage !== undefined ? { type: flags.storage } : {}), ...(flags.dataDir !== undefined ? { dir: flags.dataDir } : {}) };
  }
  if (flags.nodeName !== undefined && flags.cluster === undefined) throw new ConfigError('--node-name: needs --cluster');
  if (flags.cluster !== undefined) out.cluster = { redis: flags.cluster, ...(flags.nodeName !== undefined ? { nodeName: flags.nodeName } : {}) };
  // The data directory holds the HTTP API's token file too.
  if (flags.dataDir !== undefined) out.dataDir = flags.dataDir;
  return out;
}
