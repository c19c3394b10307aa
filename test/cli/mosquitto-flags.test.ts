// `petrel pub` / `petrel sub` with the flags mosquitto_pub / mosquitto_sub users type from habit, compared
// with the real tools where they are installed (mosquitto-clients), and MQTTX CLI's additions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createBroker, type Broker } from '../../src/index.js';
import { hasCommand } from '../helpers/certs.js';
import { tempDir } from '../client/helpers.js';
import { run, start, startCommand, type Running } from './cli-process.js';

type Ctx = { after: (fn: () => unknown) => void; skip: (msg?: string) => void };

async function petrelBroker(t: Ctx) {
  const broker = createBroker({ port: 0, host: '127.0.0.1' });
  await broker.listen();
  t.after(() => broker.close());
  return { broker, port: String(broker.address().port) };
}

const hasMosquittoClients = hasCommand('mosquitto_sub') && hasCommand('mosquitto_pub');

/** Messages that exercise every parameter: properties, an empty payload, binary bytes, quotes, UTF-8, a retained one. */
async function publishSamples(port: string): Promise<void> {
  const base = ['-h', '127.0.0.1', '-p', port, '-q', '1'];
  const runs: string[][] = [
    [...base, '-t', 'f/props', '-m', '{"a": 1.50, "b":[1,2]}', '-D', 'publish', 'content-type', 'text/x', '-D', 'publish', 'user-property', 'k', 'v', '-D', 'publish', 'user-property', 'k2', 'v2', '-D', 'publish', 'payload-format-indicator', '1', '-D', 'publish', 'response-topic', 'rt', '-D', 'publish', 'correlation-data', 'cd'],
    [...base, '-t', 'f/empty', '-n'],
    [...base, '-t', 'f/quotes', '-m', 'say "hi" \\ there'],
    [...base, '-t', 'f/utf', '-m', 'héllo wörld'],
    [...base, '-t', 'f/retained', '-m', 'kept', '-r'],
  ];
  for (const args of runs) {
    const r = await run(['pub', ...args]);
    assert.equal(r.code, 0, r.stderr);
  }
}

/** Runs `petrel sub` and `mosquitto_sub` with the same arguments; resolves when the broker has both subscriptions. */
async function bothSubscribed(broker: Broker, port: string, args: string[]): Promise<[Running, Running]> {
  const common = ['-h', '127.0.0.1', '-p', port, '-q', '1', ...args];
  let subscribed = 0;
  const counted = new Promise<void>((resolve) => {
    const onSubscribed = () => {
      if (++subscribed === 2) {
        broker.off('subscribed', onSubscribed);
        resolve();
      }
    };
    broker.on('subscribed', onSubscribed);
  });
  // (mosquitto_sub -d writes its debug lines to stdout, so neither gets -d here)
  const petrel = start(['sub', ...common]);
  const mosquitto = startCommand('mosquitto_sub', ['-V', 'mqttv5', ...common]);
  await counted;
  return [petrel, mosquitto];
}

const withoutTime = (s: string) => s.replace(/"tst":\s*"[^"]*"/g, '"tst":"T"');

test('-F prints what mosquitto_sub prints for the same messages: parameters, widths, escapes, %j, %J, --pretty, -v, -N', { timeout: 60_000 }, async (t) => {
  if (!hasMosquittoClients) return t.skip('mosquitto-clients (mosquitto_sub) not installed: it is the oracle of this test');
  const { broker, port } = await petrelBroker(t);
  const formats: string[][] = [
    ['-F', '[%t|%10t|%-10t|%.2t|%5.2t|%p|%8p|%-8p|%08p|%3p|%x|%10x|%3x|%X|%l|%05l|%-5l|%q|%r|%C|%5C|%E|%05E|%7F|%P|%R|%S|%A|%D|%%|\\t|\\\\|\\e]'],
    ['-F', '%m %q %t'],
    ['-F', '%j'],
    ['-F', '%J'],
    ['-F', '%j', '--pretty'],
    ['-v'],
    ['-N', '-v'],
    [],
  ];
  const pairs: [string[], Running, Running][] = [];
  for (const f of formats) pairs.push([f, ...(await bothSubscribed(broker, port, ['-t', 'f/#', '-C', '5', ...f]))]);
  await publishSamples(port);
  for (const [f, petrel, mosquitto] of pairs) {
    const [p, m] = await Promise.all([petrel.done, mosquitto.done]);
    assert.equal(p.code, 0, `${f.join(' ')}: ${p.stderr}`);
    assert.equal(withoutTime(p.stdout), withoutTime(m.stdout), `petrel sub ${f.join(' ')} prints what mosquitto_sub prints`);
    if (f[1] === '%J') assert.match(p.stderr, /petrel sub: message payload is not valid JSON on topic f\/quotes/);
  }
});

test('-F strings mosquitto_sub refuses are refused too, before connecting (exit 2)', async (t) => {
  for (const bad of ['%Z', 'abc%', '%10', '@', 'x\\', '\\q']) {
    const r = await run(['sub', '-p', '1', '-t', 'a', '-F', bad]);
    assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
    assert.match(r.stderr, /^petrel sub: -F ".*": (invalid|incomplete) (format specifier|escape)/);
    if (hasMosquittoClients) {
      const m = await new Promise<string>((resolve) => {
        const c = startCommand('mosquitto_sub', ['-p', '1', '-t', 'a', '-F', bad]);
        void c.done.then((x) => resolve(x.stderr));
      });
      assert.match(m, /Error: (Invalid|Incomplete) (format|escape) specifier/, `mosquitto_sub refuses ${bad} too`);
    }
  }
  if (!hasMosquittoClients) t.diagnostic('mosquitto_sub not installed: only petrel checked');
});

test("-D: mosquitto's command identifier value [value] on PUBLISH, CONNECT and the will; Petrel's key=value; typos named", async (t) => {
  const { broker, port } = await petrelBroker(t);
  const sub = start(['sub', '-h', '127.0.0.1', '-p', port, '-t', 'd/#', '-C', '2', '--format', 'json', '-d']);
  await sub.waitStderr('<- SUBACK');
  let connectProps: unknown;
  broker.on('clientConnected', (c) => {
    if (c.clientId === 'props-pub') connectProps = c;
  });
  const pub = await run(['pub', '-h', '127.0.0.1', '-p', port, '-i', 'props-pub', '-t', 'd/a', '-m', 'x', '-D', 'publish', 'user-property', 'source', 'cli tool', '-D', 'PUBLISH', 'content-type', 'text/plain', '-D', 'publish', 'message-expiry-interval', '30', '-D', 'trace=42', '-D', 'connect', 'receive-maximum', '10', '-d']);
  assert.equal(pub.code, 0, pub.stderr);
  assert.match(pub.stderr, /-> CONNECT .*"receiveMaximum":10/);
  assert.ok(connectProps, 'connected');
  // the will, with a will property, published when the client is killed
  const willSub = start(['sub', '-h', '127.0.0.1', '-p', port, '-t', 'd/will', '-C', '1', '-F', '%t %p', '-d']);
  await willSub.waitStderr('<- SUBACK');
  const dying = start(['sub', '-h', '127.0.0.1', '-p', port, '-t', 'nothing', '--will-topic', 'd/will', '--will-payload', 'gone', '--will-qos', '1', '-D', 'will', 'content-type', 'text/plain', '-d']);
  await dying.waitStderr('<- SUBACK');
  dying.kill('SIGKILL');
  const w = await willSub.done;
  assert.equal(w.stdout, 'd/will gone\n');
  await run(['pub', '-h', '127.0.0.1', '-p', port, '-t', 'd/b', '-m', 'y']);
  const r = await sub.done;
  const [a] = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { properties?: Record<string, unknown> });
  assert.deepEqual(a!.properties, { contentType: 'text/plain', messageExpiryInterval: 30, userProperties: { source: 'cli tool', trace: '42' } });

  for (const [args, message] of [
    [['-D', 'publish', 'topic-alia', '3'], /-D publish topic-alia: unknown property \(did you mean topic-alias\?\)/],
    [['-D', 'subscribe', 'user-property', 'a', 'b'], /-D subscribe: this command sends no SUBSCRIBE packet; use one of connect, publish, disconnect, will/],
    [['-D', 'connect', 'content-type', 'x'], /a CONNECT packet cannot carry content-type/],
    [['-D', 'publish', 'message-expiry-interval', 'soon'], /must be a whole number from 0 to 4294967295/],
    [['-D', 'will', 'will-delay-interval', '5'], /needs a will \(--will-topic\)/],
  ] as const) {
    const bad = await run(['pub', '-p', '1', '-t', 'a', '-m', 'b', ...args]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, message);
  }
});

test('-E exits once subscribed; -U unsubscribes a kept session; -c without -x keeps an MQTT 5 session (as mosquitto), and needs -i', async (t) => {
  const { port } = await petrelBroker(t);
  const tcp = ['-h', '127.0.0.1', '-p', port];
  const first = await run(['sub', ...tcp, '-c', '-i', 'keeper', '-t', 'keep/a', '-t', 'keep/b', '-q', '1', '-E']);
  assert.equal(first.code, 0, first.stderr);
  const unsub = await run(['sub', ...tcp, '-c', '-i', 'keeper', '-U', 'keep/b', '-E']);
  assert.equal(unsub.code, 0, unsub.stderr);
  for (const topic of ['keep/a', 'keep/b']) assert.equal((await run(['pub', ...tcp, '-t', topic, '-m', topic, '-q', '1'])).code, 0);
  // the session was kept across the two runs (no -x: it never expires), holding keep/a only
  const back = await run(['sub', ...tcp, '-c', '-i', 'keeper', '-t', 'keep/none', '-C', '1', '-W', '3', '-v']);
  assert.equal(back.stdout, 'keep/a keep/a\n', back.stderr);
  const noId = await run(['sub', ...tcp, '-c', '-t', 'x']);
  assert.equal(noId.code, 2);
  assert.match(noId.stderr, /needs a Client ID of yours \(-i or -I\)/);
});

test('-T filters out, -R hides retained, --retained-only and --remove-retained clear retained messages', async (t) => {
  const { port } = await petrelBroker(t);
  const tcp = ['-h', '127.0.0.1', '-p', port];
  for (const topic of ['r/1', 'r/2', 'r/3']) assert.equal((await run(['pub', ...tcp, '-t', topic, '-m', `v${topic}`, '-r', '-q', '1'])).code, 0);
  const hidden = await run(['sub', ...tcp, '-t', 'r/#', '-R', '-W', '1']);
  assert.equal(hidden.stdout, '');
  // clear every retained message but r/2, then exit at the first fresh message
  const clearing = start(['sub', ...tcp, '-t', 'r/#', '-T', 'r/2', '--remove-retained', '--retained-only', '-v', '-d']);
  await clearing.waitStderr('<- SUBACK');
  await clearing.waitStderr(/-> PUBLISH \{"topic":"r\/3"/);
  await run(['pub', ...tcp, '-t', 'r/fresh', '-m', 'now']);
  const cleared = await clearing.done;
  assert.equal(cleared.code, 0, cleared.stderr);
  assert.equal(cleared.stdout, 'r/1 vr/1\nr/3 vr/3\n');
  const left = await run(['sub', ...tcp, '-t', 'r/#', '-v', '-C', '1', '-W', '2']);
  assert.equal(left.stdout, 'r/2 vr/2\n');
  const both = await run(['sub', ...tcp, '-t', 'r/#', '-R', '--retained-only']);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /combining -R and --retained-only makes no sense/);
});

test('unknown flags: the nearest flag, the command it belongs to, or why Petrel does not offer it', async () => {
  const cases: [string[], RegExp][] = [
    [['sub', '-t', 'a', '--will-paylod', 'x'], /^petrel sub: unknown option '--will-paylod' \(did you mean --will-payload, the same as --will-message\?\)/],
    [['sub', '-t', 'a', '--tpoic', 'x'], /unknown option '--tpoic' \(did you mean --topic\?\)/],
    [['pub', '-t', 'a', '-m', 'b', '-E'], /unknown option '-E': it is a flag of `petrel sub`, not of `petrel pub`/],
    [['sub', '-t', 'a', '-r'], /unknown option '-r': it is a flag of `petrel pub`, not of `petrel sub`/],
    [['pub', '-t', 'a', '-m', 'b', '--psk', '00'], /--psk: TLS-PSK is not offered/],
    [['sub', '-t', 'a', '--unix', '/tmp/s'], /--unix: Unix domain sockets are not offered/],
    [['sub', '-t', 'a', '--format', '%t %p'], /--format must be text, json, hex or base64 \(got "%t %p"\); for a mosquitto format string use -F '%t %p'/],
  ];
  for (const [args, message] of cases) {
    const r = await run(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
});

test("MQTTX's spellings and additions: --hostname/--client-id/-up, payloads in hex and base64, --file-write, --file-save", async (t) => {
  const { port } = await petrelBroker(t);
  const dir = tempDir();
  const log = join(dir, 'messages.log');
  const saved = join(dir, 'payload.bin');
  const subs = [
    start(['sub', '--hostname', '127.0.0.1', '-p', port, '--client-id', 'mqttx-style', '-t', 'x/#', '-C', '2', '--format', 'hex', '-v', '-d']),
    start(['sub', '-h', '127.0.0.1', '-p', port, '-t', 'x/#', '-C', '2', '--format', 'base64', '-d']),
    start(['sub', '-h', '127.0.0.1', '-p', port, '-t', 'x/#', '-C', '2', '-v', '--file-write', log, '-d']),
    start(['sub', '-h', '127.0.0.1', '-p', port, '-t', 'x/#', '-C', '2', '--file-save', saved, '-d']),
  ];
  for (const s of subs) await s.waitStderr('<- SUBACK');
  assert.equal((await run(['pub', '-h', '127.0.0.1', '-p', port, '-t', 'x/bin', '-m', 'ff 00 41', '--format', 'hex', '-up', 'a=b'])).code, 0);
  assert.equal((await run(['pub', '-h', '127.0.0.1', '-p', port, '-t', 'x/b64', '-m', 'aGk=', '--format', 'base64'])).code, 0);
  const [hex, b64, written, savedRun] = await Promise.all(subs.map((s) => s.done));
  assert.equal(hex!.stdout, 'x/bin ff0041\nx/b64 6869\n');
  assert.equal(b64!.stdout, '/wBB\naGk=\n');
  assert.equal(written!.stdout, '');
  assert.equal(readFileSync(log, 'utf8'), 'x/bin \xff\x00A\nx/b64 hi\n'.replace('\xff', '\ufffd'));
  assert.deepEqual(readFileSync(saved), Buffer.from([0xff, 0x00, 0x41]));
  assert.equal(readFileSync(join(dir, 'payload-1.bin'), 'utf8'), 'hi');
  assert.match(savedRun!.stderr, /x\/bin: 3 bytes saved in .*payload\.bin/);
  const badHex = await run(['pub', '-p', port, '-t', 'a', '-m', 'xyz', '--format', 'hex']);
  assert.equal(badHex.code, 2);
  assert.match(badHex.stderr, /-m "xyz" is not hex/);
});

test('profiles: --save-profile keeps the connection flags (file mode 0600), --profile and PETREL_PROFILE use them, the command line wins', async (t) => {
  const { port } = await petrelBroker(t);
  const dir = tempDir();
  const env = { ...process.env, PETREL_PROFILES: join(dir, 'profiles') };
  const saved = await run(['pub', '-h', '127.0.0.1', '-p', port, '-u', 'alice', '-P', 'pw', '--save-profile', 'local', '-t', 'p/a', '-m', 'one'], undefined, env);
  assert.equal(saved.code, 0, saved.stderr);
  assert.match(saved.stderr, /saved the connection options as profile "local"/);
  assert.equal(statSync(env.PETREL_PROFILES).mode & 0o777, 0o600, 'the profile may hold a password: owner only');
  const text = readFileSync(env.PETREL_PROFILES, 'utf8');
  assert.match(text, /\[local\]\n--host 127\.0\.0\.1\n--port \d+\n--username alice\n--password pw\n/);
  assert.ok(!text.includes('p/a'), 'the topic and message are not connection options');
  const sub = start(['sub', '--profile', 'local', '-t', 'p/#', '-C', '1', '-v', '-d'], undefined, [], { env });
  await sub.waitStderr('<- SUBACK');
  assert.equal((await run(['pub', '-t', 'p/b', '-m', 'two'], undefined, { ...env, PETREL_PROFILE: 'local' })).code, 0);
  assert.equal((await sub.done).stdout, 'p/b two\n');
  // a flag given on the command line wins over the profile's
  const wins = await run(['pub', '--profile', 'local', '-p', '1', '-t', 'a', '-m', 'b'], undefined, env);
  assert.equal(wins.code, 1);
  assert.match(wins.stderr, /127\.0\.0\.1:1 \(ECONNREFUSED\)/);
  const typo = await run(['pub', '--profile', 'locl', '-t', 'a', '-m', 'b'], undefined, env);
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /no profile "locl" in .*profiles \(did you mean local\?\)/);
  writeFileSync(join(dir, 'bad'), '-h x\n');
  const bad = await run(['pub', '--profile', 'x', '-t', 'a', '-m', 'b'], undefined, { ...env, PETREL_PROFILES: join(dir, 'bad') });
  assert.match(bad.stderr, /line 1: "-h x" comes before any \[profile\] line/);
  assert.ok(existsSync(env.PETREL_PROFILES));
});

test('a session that never expires (-x -1, as mosquitto) reaches the broker as 4294967295', async (t) => {
  const { port } = await petrelBroker(t);
  const r = await run(['pub', '-h', '127.0.0.1', '-p', port, '-i', 'forever', '-x', '-1', '-t', 'a', '-m', 'b', '-d']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /-> CONNECT .*"sessionExpiryInterval":4294967295/);
  const client = new (await import('../../src/client/client.js')).MqttClient({ url: `mqtt://127.0.0.1:${port}`, clientId: 'forever', clean: false, reconnect: false });
  const connack = await client.connect();
  assert.equal(connack.sessionPresent, true, 'the session outlived the connection');
  await client.end();
});
