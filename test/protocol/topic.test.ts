// Topic name / filter validation, matching and shared subscriptions (spec 4.7, 4.8.2).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isValidTopicFilter, isValidTopicName, parseSharedSubscription, topicMatches } from '../../src/protocol/topic.js';
import { expectProtocolError } from './helpers.js';

describe('isValidTopicName', () => {
  it('accepts ordinary names, "/" and empty levels', () => {
    for (const t of ['a', 'a/b/c', '/', '/a', 'a//b', '$SYS/x', 'ü/€', ' ']) assert.ok(isValidTopicName(t), t);
  });
  it('[MQTT-4.7.3-1] rejects the empty name', () => assert.equal(isValidTopicName(''), false));
  it('[MQTT-3.3.2-2] rejects wildcards', () => {
    for (const t of ['+', 'a/+', 'a/#', '#', 'a+b']) assert.equal(isValidTopicName(t), false, t);
  });
  it('[MQTT-4.7.3-2] rejects U+0000', () => assert.equal(isValidTopicName('a\u0000b'), false));
  it('[MQTT-4.7.3-3] rejects names over 65535 bytes', () => {
    assert.ok(isValidTopicName('a'.repeat(65535)));
    assert.equal(isValidTopicName('a'.repeat(65536)), false);
    assert.equal(isValidTopicName('€'.repeat(21846)), false);
  });
  it('rejects unpaired surrogates', () => {
    assert.equal(isValidTopicName('a\uD800'), false);
    assert.ok(isValidTopicName('a\uD83D\uDE00'));
  });
});

describe('isValidTopicFilter', () => {
  it('accepts valid filters', () => {
    for (const f of ['a', '#', '+', 'a/#', 'a/+/b', '+/+', '/+', '+/', 'a//#', '$share/g/a', 'sport/tennis/+']) {
      assert.ok(isValidTopicFilter(f), f);
    }
  });
  it('[MQTT-4.7.1-1] "#" must be alone and last', () => {
    for (const f of ['a#', 'a/#/b', '#/a', 'a/b#', '##']) assert.equal(isValidTopicFilter(f), false, f);
  });
  it('[MQTT-4.7.1-2] "+" must occupy a whole level', () => {
    for (const f of ['a+', '+a', 'a/+b/c', '++']) assert.equal(isValidTopicFilter(f), false, f);
  });
  it('rejects the empty filter and U+0000', () => {
    assert.equal(isValidTopicFilter(''), false);
    assert.equal(isValidTopicFilter('a/\u0000'), false);
  });
});

describe('topicMatches', () => {
  const yes: [string, string][] = [
    ['a/b', 'a/b'],
    ['a/+', 'a/b'],
    ['a/+', 'a/'],
    ['+/+', '/'],
    ['+', 'a'],
    ['#', 'a/b/c'],
    ['a/#', 'a'],
    ['a/#', 'a/b/c'],
    ['a/#', 'a/'],
    ['+/b/#', 'x/b'],
    ['sport/tennis/+', 'sport/tennis/player1'],
    ['/+', '/finance'],
    ['$SYS/#', '$SYS/broker/uptime'],
    ['$SYS/+', '$SYS/x'],
  ];
  const no: [string, string][] = [
    ['a/b', 'a/c'],
    ['a/b', 'a/b/c'],
    ['a/b/c', 'a/b'],
    ['a/+', 'a'],
    ['a/+', 'a/b/c'],
    ['+', '/'],
    ['+', '/a'],
    ['a/#', 'b'],
    ['a/#', 'ab'],
    ['ab', 'a'],
    ['a', 'ab'],
    ['sport/+', 'sport'],
  ];
  for (const [f, t] of yes) it(`"${f}" matches "${t}"`, () => assert.equal(topicMatches(f, t), true));
  for (const [f, t] of no) it(`"${f}" does not match "${t}"`, () => assert.equal(topicMatches(f, t), false));
  it('[MQTT-4.7.2-1] filters starting with a wildcard do not match $-topics', () => {
    assert.equal(topicMatches('#', '$SYS/x'), false);
    assert.equal(topicMatches('+/x', '$SYS/x'), false);
    assert.equal(topicMatches('+/#', '$SYS'), false);
  });
});

describe('parseSharedSubscription', () => {
  it('parses $share/{group}/{filter}', () => {
    assert.deepEqual(parseSharedSubscription('$share/g/a/b'), { group: 'g', filter: 'a/b' });
    assert.deepEqual(parseSharedSubscription('$share/group1/#'), { group: 'group1', filter: '#' });
    assert.deepEqual(parseSharedSubscription('$share/g//a'), { group: 'g', filter: '/a' });
  });
  it('returns undefined for other filters', () => {
    assert.equal(parseSharedSubscription('a/b'), undefined);
    assert.equal(parseSharedSubscription('$SYS/#'), undefined);
    assert.equal(parseSharedSubscription('$sharex/g/a'), undefined);
  });
  it('[MQTT-4.8.2-2] share name with wildcards or empty → 0x8F', () => {
    for (const f of ['$share/+/a', '$share/g#/a', '$share//a']) void expectProtocolError(() => parseSharedSubscription(f), 0x8f);
  });
  it('missing or invalid filter → 0x8F', () => {
    for (const f of ['$share/g', '$share/g/', '$share/g/a#']) void expectProtocolError(() => parseSharedSubscription(f), 0x8f);
  });
});
