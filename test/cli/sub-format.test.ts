// mosquitto_sub's -F format strings in `petrel sub` (src/cli/sub-format.ts), on fixed messages and a fixed
// clock: parameters, flags, width and precision, escapes, @-time, JSON; and the formats it refuses.
// test/cli/mosquitto-flags.test.ts compares the same output with the real mosquitto_sub.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import type { Message } from '../../src/client/index.js';
import { compileFormat, strftime, type Timestamp } from '../../src/cli/sub-format.js';

const NOW: Timestamp = { ms: Date.UTC(2024, 4, 6, 21, 48, 3, 123), ns: 123_456_789 };
const TZ = process.env.TZ;
process.env.TZ = 'UTC';
test.after(() => (TZ === undefined ? delete process.env.TZ : (process.env.TZ = TZ)));

const msg = (o: Partial<Message> = {}): Message => ({ topic: 'sensors/temp', payload: Buffer.from('hello'), qos: 1, retain: false, dup: false, ...o });
const fmt = (format: string, m: Message = msg(), mid = 7, options: { pretty?: boolean } = {}) => compileFormat(format, options)({ message: m, mid }, NOW).toString('latin1');

test('the message parameters: %t %p %q %r %l %m %x %X %%', () => {
  assert.equal(fmt('%t %p %q %r %l %m %x %X %%'), 'sensors/temp hello 1 0 5 7 68656c6c6f 68656C6C6F %');
  assert.equal(fmt('%r', msg({ retain: true })), '1');
  assert.equal(fmt('[%p]', msg({ payload: Buffer.alloc(0) })), '[]');
});

test('flags, width and precision as mosquitto_sub 2.0 applies them (payload cut to the width; hex to half of it)', () => {
  assert.equal(fmt('[%15t|%-15t|%.3t|%5.2t]'), '[   sensors/temp|sensors/temp   |sen|   se]');
  assert.equal(fmt('[%8p|%-8p|%08p|%3p]'), '[   hello|hello   |000hello|hel]');
  assert.equal(fmt('[%10x|%3x|%-10X]'), '[      6865| 68|6865      ]');
  assert.equal(fmt('[%5l|%05l|%-5l|%03m]'), '[    5|00005|5    |007]');
  // an absent property: blanks (or zeros with 0) to the width; %R prints nothing
  assert.equal(fmt('[%5C|%05E|%3F|%4R|%2S|%2A]'), '[     |00000|   ||  |  ]');
});

test('MQTT 5 properties: %C %D %E %F %P %R %S %A', () => {
  const m = msg({
    properties: {
      contentType: 'text/plain',
      correlationData: Buffer.from('req-1'),
      messageExpiryInterval: 60,
      payloadFormatIndicator: 1,
      userProperties: [['k', 'v'], ['k', 'w']],
      responseTopic: 'reply/me',
      subscriptionIdentifier: [3, 4],
      topicAlias: 2,
    },
  });
  assert.equal(fmt('%C|%D|%E|%F|%P|%R|%S|%A', m), 'text/plain|req-1|60|1|k:v k:w|reply/me|3|2');
});

test('escapes and @-time (strftime, local time), %I %U', () => {
  assert.equal(fmt('a\\tb\\nc\\\\d\\0e\\e\\a\\r\\v'), 'a\tb\nc\\d\0e\x1b\x07\r\v');
  assert.equal(fmt('@Y-@m-@d @H:@M:@S.@N @@ @s'), '2024-05-06 21:48:03.123456789 @ 1715032083');
  assert.equal(fmt('%I|%U'), '2024-05-06T21:48:03+0000|1715032083.123456789');
  assert.equal(strftime('a %b %e %j %p %I %y %u %%', NOW), 'Mon May  6 127 PM 09 24 1 %');
});

test('%j and %J: the fields mosquitto_sub prints, payload as a string, a list of bytes, or JSON itself; --pretty', () => {
  const m = msg({ payload: Buffer.from('{"a": 1.50}'), properties: { contentType: 'application/json', userProperties: [['k', 'v']] } });
  assert.equal(
    fmt('%j', m),
    '{"tst":"2024-05-06T21:48:03.123456Z+0000","topic":"sensors/temp","qos":1,"retain":0,"payloadlen":11,"mid":7,"properties":{"content-type":"application/json","user-properties":{"k":"v"}},"payload":"{\\"a\\": 1.50}"}',
  );
  assert.equal(fmt('%J', m), '{"tst":"2024-05-06T21:48:03.123456Z+0000","topic":"sensors/temp","qos":1,"retain":0,"payloadlen":11,"mid":7,"properties":{"content-type":"application/json","user-properties":{"k":"v"}},"payload":{"a":1.5}}');
  assert.equal(fmt('%j', msg({ qos: 0, payload: Buffer.from([0, 255]) })), '{"tst":"2024-05-06T21:48:03.123456Z+0000","topic":"sensors/temp","qos":0,"retain":0,"payloadlen":2,"payload":[0,255]}');
  assert.equal(fmt('%j', msg({ qos: 0, payload: Buffer.alloc(0) })), '{"tst":"2024-05-06T21:48:03.123456Z+0000","topic":"sensors/temp","qos":0,"retain":0,"payloadlen":0,"payload":null}');
  assert.equal(
    fmt('%j', msg({ qos: 0, payload: Buffer.from('x') }), 0, { pretty: true }),
    '{\n\t"tst":\t"2024-05-06T21:48:03.123456Z+0000",\n\t"topic":\t"sensors/temp",\n\t"qos":\t0,\n\t"retain":\t0,\n\t"payloadlen":\t1,\n\t"payload":\t"x"\n}',
  );
  const warnings: string[] = [];
  const out = compileFormat('%J', { warn: (w) => warnings.push(w) })({ message: msg(), mid: 1 }, NOW);
  assert.equal(out.length, 0);
  assert.deepEqual(warnings, ['message payload is not valid JSON on topic sensors/temp']);
});

test('formats mosquitto_sub refuses are refused before connecting, with the reason', () => {
  assert.throws(() => compileFormat('%Z'), /invalid format specifier '%Z'/);
  assert.throws(() => compileFormat('abc%'), /incomplete format specifier/);
  assert.throws(() => compileFormat('%10'), /incomplete format specifier/);
  assert.throws(() => compileFormat('@'), /incomplete format specifier/);
  assert.throws(() => compileFormat('x\\'), /incomplete escape/);
  assert.throws(() => compileFormat('\\q'), /invalid escape '\\q'/);
  assert.doesNotThrow(() => compileFormat('%-05.3t @Q %% @@ \\0'));
});
