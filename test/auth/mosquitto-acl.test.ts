// Mosquitto's acl_file format, read as Mosquitto reads it (mosquitto.conf(5), "acl_file"): anonymous
// lines before the first `user`, per-user `topic` lines, `pattern` lines for everyone with %u / %c, `deny`
// over any grant, and everything else denied.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Acl } from '../../src/auth/acl.js';
import { isMosquittoAcl } from '../../src/auth/mosquitto-acl.js';
import type { PubAckLikePacket, SubackPacket } from '../../src/protocol/packets.js';
import { pub } from '../helpers/packets.js';
import { RawClient } from '../helpers/raw-client.js';
import { startLogged } from '../transport/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'petrel-mosquitto-acl-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const PLANT_ACL = `# Mosquitto acl_file
topic read public/#

# a comment between sections
user alice
topic readwrite alice/#
topic deny alice/secret/#
topic write alarms/fire

user bob smith
topic read reports/daily summary

pattern write devices/%c/telemetry
pattern read users/%u/#
`;

function aclFrom(text: string, options: { default?: 'allow' | 'deny'; strictSubscribe?: boolean } = {}): Acl {
  const file = join(dir, `acl-${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, text);
  // Strict subscriptions by default here: these tests pin which filters a rule set refuses whole; the
  // per-message semantics (the broker's default) are tested below and in acl.test.ts.
  return new Acl({ file, strictSubscribe: true, ...options });
}

const client = (username: string | undefined, clientId = 'c1') => ({ clientId, username, remoteAddress: '127.0.0.1:1', certificateCN: undefined });

describe('Mosquitto acl_file format', () => {
  it('is recognised by its first rule line; Petrel lines are not', () => {
    assert.equal(isMosquittoAcl(PLANT_ACL), true);
    assert.equal(isMosquittoAcl('# plant\nallow all all #\n'), false);
    assert.equal(isMosquittoAcl('user alice\n'), true);
  });

  it('lines before the first user line are for clients without a user name only', () => {
    const acl = aclFrom(PLANT_ACL);
    assert.equal(acl.canSubscribe(client(undefined), 'public/#'), true);
    assert.equal(acl.canPublish(client(undefined), 'public/x'), false, 'read only');
    assert.equal(acl.canSubscribe(client('alice'), 'public/#'), false, 'a named user does not get the anonymous lines');
  });

  it('user sections: readwrite by default, read = subscribe, write = publish; user names and topics may hold spaces', () => {
    const acl = aclFrom(PLANT_ACL);
    const alice = client('alice');
    assert.equal(acl.canPublish(alice, 'alice/notes'), true);
    assert.equal(acl.canSubscribe(alice, 'alice/notes/#'), true);
    assert.equal(acl.canSubscribe(alice, 'alice/+'), false, 'alice/+ matches alice/secret, which the deny line covers');
    assert.equal(acl.canPublish(alice, 'alarms/fire'), true);
    assert.equal(acl.canSubscribe(alice, 'alarms/fire'), false);
    assert.equal(acl.canSubscribe(client('bob smith'), 'reports/daily summary'), true);
    assert.equal(acl.canSubscribe(client('bob'), 'reports/daily summary'), false);
  });

  it('deny overrides a grant wherever it is written; what nothing grants is denied', () => {
    const acl = aclFrom(PLANT_ACL);
    const alice = client('alice');
    assert.equal(acl.canPublish(alice, 'alice/secret/plans'), false);
    assert.equal(acl.canSubscribe(alice, 'alice/#'), false, 'the filter could match a denied topic');
    assert.equal(acl.canPublish(alice, 'elsewhere'), false, 'default deny, as Mosquitto once an acl_file is set');
    assert.equal(aclFrom(PLANT_ACL, { default: 'allow' }).canPublish(alice, 'elsewhere'), true, 'unless default says otherwise');
    // Mosquitto's own semantics (strictSubscribe false, the broker's default): the wildcard is granted and the
    // denied topic is filtered out of what is delivered.
    const loose = aclFrom(PLANT_ACL, { strictSubscribe: false });
    assert.equal(loose.canSubscribe(alice, 'alice/#'), true, 'granted: some of its topics are allowed');
    assert.equal(loose.canReceive(alice, 'alice/secret/plans'), false, 'but the denied topic is not delivered');
    assert.equal(loose.canReceive(alice, 'alice/notes'), true);
  });

  it('pattern lines apply to every client, with %c and %u', () => {
    const acl = aclFrom(PLANT_ACL);
    assert.equal(acl.canPublish(client('carol', 'dev-7'), 'devices/dev-7/telemetry'), true);
    assert.equal(acl.canPublish(client('carol', 'dev-7'), 'devices/dev-8/telemetry'), false);
    assert.equal(acl.canPublish(client(undefined, 'dev-9'), 'devices/dev-9/telemetry'), true);
    assert.equal(acl.canSubscribe(client('carol'), 'users/carol/#'), true);
    assert.equal(acl.canSubscribe(client(undefined), 'users/+/#'), false, '%u without a user name grants nothing');
  });

  it('a line it cannot read is named with its number', () => {
    assert.throws(() => aclFrom('user alice\ntopic\n'), /line 2: "topic" needs a topic/);
    assert.throws(() => aclFrom('user alice\nallow all all #\n'), /line 2: expected "topic", "pattern" or "user"/);
    assert.throws(() => aclFrom('topic read a/#/b\n'), /line 1\.topic: "a\/#\/b" is not a valid topic pattern/);
  });

  it('a broker with a Mosquitto acl_file: SUBACK 0x87 / PUBACK 0x87 where it denies, delivery where it grants', async () => {
    const file = join(dir, 'broker.acl');
    writeFileSync(file, PLANT_ACL);
    const { broker } = await startLogged({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }], acl: { file } });
    try {
      const port = broker.address().port;
      const { client: anon } = await RawClient.connect(port, { protocolVersion: 5, clientId: 'anon' });
      anon.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'public/#', qos: 1 }, { topicFilter: 'private/#', qos: 1 }] });
      assert.deepEqual(((await anon.next(9)) as SubackPacket).reasonCodes, [1, 0x87]);
      const { client: device } = await RawClient.connect(port, { protocolVersion: 5, clientId: 'dev-1', username: 'alice' });
      device.send(pub('public/news', 'hi', { qos: 1, packetId: 1 }));
      assert.equal(((await device.next(4)) as PubAckLikePacket).reasonCode, 0x87, 'alice may not write public/');
      anon.destroy();
      device.destroy();
    } finally {
      await broker.close();
    }
  });
});
