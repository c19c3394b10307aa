// `petrel convert-config`: a Mosquitto 2 configuration as a Petrel config that the broker accepts, with
// every option left out named by its line.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfigFile, validateConfig } from '../../src/config/config.js';
import { convertMosquittoConf } from '../../src/config/mosquitto-conf.js';
import { run } from '../cli/cli-process.js';
import { createBroker } from '../../src/index.js';
import { connect } from '../../src/client/index.js';

const dir = mkdtempSync(join(tmpdir(), 'petrel-convert-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const TYPICAL = `# A typical Mosquitto 2 setup
per_listener_settings false
allow_anonymous false
password_file /etc/mosquitto/passwd
acl_file /etc/mosquitto/acl
persistence true
max_queued_messages 5000
max_inflight_messages 0
queue_qos0_messages true
persistent_client_expiration 2d
sys_interval 30
max_keepalive 300

listener 1883
max_connections 5000

listener 8883
certfile /etc/mosquitto/certs/server.crt
keyfile /etc/mosquitto/certs/server.key
cafile /etc/mosquitto/certs/ca.crt
require_certificate true
use_identity_as_username true
tls_version tlsv1.3

listener 8083 127.0.0.1
protocol websockets

connection cloud
address cloud.example:8883
topic sensors/# out 1
remote_username edge
`;

describe('petrel convert-config (Mosquitto 2 configuration)', () => {
  it('carries over listeners, security files and limits into a config the broker accepts', () => {
    const { config, notes } = convertMosquittoConf(TYPICAL);
    assert.deepEqual(validateConfig(config), config);
    assert.deepEqual(config.listeners, [
      { type: 'tcp', port: 1883, maxConnections: 5000 },
      {
        type: 'tls',
        port: 8883,
        cert: '/etc/mosquitto/certs/server.crt',
        key: '/etc/mosquitto/certs/server.key',
        ca: '/etc/mosquitto/certs/ca.crt',
        requestCert: true,
        peerCertAsUsername: 'cn',
        minVersion: 'TLSv1.3',
      },
      { type: 'ws', port: 8083, host: '127.0.0.1', path: '*' },
    ]);
    assert.equal(config.allowAnonymous, false);
    assert.equal(config.passwordFile, '/etc/mosquitto/passwd');
    assert.deepEqual(config.acl, { file: '/etc/mosquitto/acl', default: 'deny' }, 'Mosquitto denies what its acl_file does not grant, even an empty one');
    assert.equal(config.maxQueuedMessages, 5000);
    assert.equal(config.maxInflight, 65535, "Mosquitto's 0 is no limit");
    assert.equal(config.queueQos0, true);
    assert.equal(config.sessionExpiry, 2 * 86_400);
    assert.equal(config.sysInterval, 30);
    assert.equal(config.maxKeepAlive, 300);
    assert.deepEqual(config.storage, { type: 'sqlite' }, 'persistence true: durable storage');
    assert.deepEqual(notes, [
      'line 6: persistence: storage.type sqlite: every change is committed before it is acknowledged, not snapshotted every autosave_interval, so a kill -9 loses nothing acknowledged; mosquitto.db is not imported',
      'line 28: connection: bridge "cloud" skipped: Petrel has no bridges yet',
    ]);
  });

  it('the default listener: `port` and the options before the first listener; none at all is Mosquitto 2\'s local only mode (localhost:1883, anonymous allowed)', () => {
    const withPort = convertMosquittoConf('port 8883\ncertfile s.crt\nkeyfile s.key\nallow_anonymous true\nlistener 1884\n');
    assert.deepEqual(withPort.config.listeners, [{ type: 'tls', port: 8883, cert: 's.crt', key: 's.key' }, { type: 'tcp', port: 1884 }]);
    assert.equal(withPort.config.allowAnonymous, true);
    const none = convertMosquittoConf('# nothing\n');
    assert.deepEqual(none.config.listeners, [{ type: 'tcp', port: 1883, host: '127.0.0.1' }]);
    assert.equal(none.config.allowAnonymous, true, 'local only mode lets anonymous clients in');
    assert.match(none.notes[0]!, /"local only mode", on localhost:1883 with anonymous clients allowed/);
    // Mosquitto ignores allow_anonymous false in local only mode (checked against mosquitto 2.0.11 itself in the test below)
    const refused = convertMosquittoConf('allow_anonymous false\npassword_file /etc/mosquitto/passwd\n');
    assert.equal(refused.config.allowAnonymous, true);
    assert.equal(refused.config.passwordFile, '/etc/mosquitto/passwd');
    assert.match(refused.notes.join('\n'), /allow_anonymous false: Mosquitto ignores it in local only mode/);
    // with a listener, Mosquitto 2 refuses anonymous clients unless told otherwise
    assert.equal(convertMosquittoConf('listener 1883\n').config.allowAnonymous, false);
    assert.equal(convertMosquittoConf('max_queued_bytes 1048576\n').config.maxQueuedBytes, 1048576);
  });

  it('an unknown option or an unreadable value is named by its line; an option that asks for what Petrel does anyway is not', () => {
    const { config, notes } = convertMosquittoConf('listener 1883\nmax_qos 7\nfrobnicate yes\npersistence false\nset_tcp_nodelay true\nmax_queued_messages lots\n');
    assert.deepEqual(notes, ['line 2: max_qos: cannot read "7"; skipped', 'line 3: frobnicate: not recognised; skipped', 'line 6: max_queued_messages: cannot read "lots"; skipped']);
    assert.deepEqual(validateConfig(config), config);
    assert.deepEqual(config.storage, { type: 'memory' }, 'persistence false: nothing kept, as in Mosquitto');
  });

  it('persistence_location and autosave_interval: the data directory, and why there is no snapshot interval', () => {
    const { config, notes } = convertMosquittoConf('listener 1883\npersistence true\npersistence_location /var/lib/mosquitto/\nautosave_interval 1800\n');
    assert.deepEqual(config.storage, { type: 'sqlite', dir: '/var/lib/mosquitto' });
    assert.match(notes[1]!, /^line 3: persistence_location: storage.dir: Petrel writes petrel.db in \/var\/lib\/mosquitto\//);
    assert.match(notes[2]!, /^line 4: autosave_interval: not carried over: not needed: Petrel commits every change before acknowledging it/);
    assert.deepEqual(validateConfig(config), config);
  });

  it('the command writes YAML that petrel broker loads, and lists what it left out on stderr', async () => {
    const conf = join(dir, 'mosquitto.conf');
    writeFileSync(conf, TYPICAL.replace(/\/etc\/mosquitto\/certs\//g, `${dir}/`));
    const r = await run(['convert-config', conf]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^# Converted from .* by petrel convert-config\.\n# Not carried over:\n#   line 6: persistence/);
    assert.equal(r.stderr.trim().split('\n').length, 2);
    const yaml = join(dir, 'petrel.config.yaml');
    writeFileSync(yaml, r.stdout);
    assert.equal(loadConfigFile(yaml).sysInterval, 30);
    const missing = await run(['convert-config', join(dir, 'nope.conf')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot read .*nope\.conf: ENOENT/);
  });

  it("Debian's own /etc/mosquitto/mosquitto.conf converts", { skip: existsSync('/etc/mosquitto/mosquitto.conf') ? false : 'mosquitto not installed' }, async () => {
    const r = await run(['convert-config', '/etc/mosquitto/mosquitto.conf']);
    assert.equal(r.code, 0, r.stderr);
    const yaml = join(dir, 'debian.yaml');
    writeFileSync(yaml, r.stdout);
    const config = loadConfigFile(yaml);
    assert.deepEqual(config.listeners, [{ type: 'tcp', port: 1883, host: '127.0.0.1' }]);
    // Mosquitto runs this file in local only mode (verified with mosquitto 2.0.11: an anonymous mosquitto_pub
    // connects on localhost): the converted broker lets an anonymous client in too (on port 0 here)
    assert.equal(config.allowAnonymous, true);
    const { logLevel: _l, memoryProfile: _m, ...options } = config;
    const broker = createBroker({ ...options, listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }] });
    await broker.listen();
    try {
      const client = await connect(`mqtt://127.0.0.1:${broker.address().port}`, { reconnect: false });
      await client.end();
    } finally {
      await broker.close();
    }
  });
});
