// `petrel convert-config mosquitto.conf > petrel.config.yaml`: a Mosquitto configuration as a Petrel one.
// The YAML goes to stdout; what could not be carried over is listed on stderr and, as comments, at the top
// of the YAML, so the file keeps saying what it left out.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';

/** Exit code of a bad argument (EXIT.USAGE). */
const USAGE = 2;

export function registerConvertConfigCommand(program: Command): void {
  program
    .command('convert-config')
    .description('print a Mosquitto configuration (mosquitto.conf) as a Petrel config file (YAML)')
    .argument('<mosquitto.conf>', 'the Mosquitto configuration file')
    .addHelpText('after', '\nExample:\n  petrel convert-config /etc/mosquitto/mosquitto.conf > petrel.config.yaml\n  petrel broker -c petrel.config.yaml\n')
    .action(async (file: string) => {
      // loaded when the command runs: --help needs none of it
      const [{ stringify: toYaml }, { validateConfig }, { convertMosquittoConf }] = await Promise.all([
        import('yaml'),
        import('../config/config.js'),
        import('../config/mosquitto-conf.js'),
      ]);
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        console.error(`petrel convert-config: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
        process.exit(USAGE);
      }
      const { config, notes } = convertMosquittoConf(text);
      try {
        validateConfig(config);
      } catch (err) {
        console.error(`petrel convert-config: ${file} gives a config Petrel refuses: ${(err as Error).message}`);
        process.exit(1);
      }
      const header = [`# Converted from ${file} by petrel convert-config.`, ...(notes.length ? ['# Not carried over:', ...notes.map((n) => `#   ${n}`)] : [])];
      process.stdout.write(`${header.join('\n')}\n${toYaml(config)}`);
      for (const n of notes) console.error(`petrel convert-config: ${file}: ${n}`);
    });
}
