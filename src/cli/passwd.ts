// `petrel passwd FILE USER`: adds or changes a user in a password file (salted scrypt hashes);
// `petrel passwd -D FILE USER` removes one. The broker re-reads the file when it changes.
import type { Command } from 'commander';

interface PasswdFlags {
  delete?: boolean;
  password?: string;
  stdin?: boolean;
}

/** Reads one line from a non-TTY stdin (for scripts: `echo secret | petrel passwd FILE USER`). */
async function readStdinLine(): Promise<string> {
  let data = '';
  for await (const chunk of process.stdin) {
    data += chunk.toString();
    if (data.includes('\n')) break;
  }
  return data.split(/\r?\n/)[0] ?? '';
}

/** Prompts without echo on a terminal. */
function prompt(question: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(question);
    stdin.setRawMode(true);
    stdin.resume();
    let value = '';
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          done();
          resolve(value);
          return;
        }
        if (ch === '\u0003') {
          done();
          reject(new Error('cancelled'));
          return;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    const done = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    stdin.on('data', onData);
  });
}

async function getPassword(flags: PasswdFlags): Promise<string> {
  if (flags.password !== undefined) return flags.password;
  if (flags.stdin || !process.stdin.isTTY) return readStdinLine();
  const first = await prompt('Password: ');
  const second = await prompt('Reenter password: ');
  if (first !== second) throw new Error('passwords do not match');
  return first;
}

export function registerPasswdCommand(program: Command): void {
  program
    .command('passwd')
    .description('add, change (-D: delete) a user in a password file of salted scrypt hashes')
    .argument('<file>', 'password file (created when missing, mode 0600)')
    .argument('<username>', 'user to add, change or delete')
    .option('-D, --delete', 'delete the user')
    .option('--password <password>', 'the password (visible to other local users in the process list; prefer stdin)')
    .option('--stdin', 'read the password from the first line of stdin (default when stdin is not a terminal)')
    .addHelpText('after', '\nExamples:\n  petrel passwd /etc/petrel/passwd alice\n  echo "$PASS" | petrel passwd /etc/petrel/passwd sensor-7\n  petrel passwd -D /etc/petrel/passwd alice\n')
    .action(async (file: string, username: string, flags: PasswdFlags) => {
      const { deleteUser, setPassword } = await import('../auth/password-file.js');
      try {
        if (flags.delete) {
          if (!deleteUser(file, username)) {
            console.error(`petrel passwd: no user ${JSON.stringify(username)} in ${file}`);
            process.exit(1);
          }
          console.error(`deleted ${username}`);
          return;
        }
        const password = await getPassword(flags);
        if (password === '') throw new Error('empty password');
        const result = await setPassword(file, username, password);
        console.error(`${result} ${username}`);
      } catch (err) {
        console.error(`petrel passwd: ${(err as Error).message}`);
        process.exit(1);
      }
    });
}
