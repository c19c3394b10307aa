// MQTT-SN gateway benchmark (`npm run bench:mqttsn`): MQTT-SN QoS 0 and QoS 1 publishers → one MQTT
// subscriber, beside the same load over MQTT/TCP, in one run against one broker child process.
// Reports delivered msg/s and the broker's CPU time per message (process.cpuUsage() of the child).
// 127.0.0.1 only; every phase is bounded in time.
//
//   npm run bench:mqttsn -- --duration 5 --publishers 4
import { Buffer } from 'node:buffer';
import { fork, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connect, type MqttClient } from '../src/client/index.js';
import { decodeSn, encodeSn } from '../src/mqttsn/codec.js';
import { SnType } from '../src/mqttsn/packets.js';

interface Ports {
  tcp: number;
  sn: number;
}

// ---------------------------------------------------------------- the broker child

async function brokerChild(): Promise<void> {
  const { createBroker } = await import('../src/server/broker.js');
  const broker = createBroker({
    listeners: [
      { type: 'tcp', host: '127.0.0.1', port: 0 },
      { type: 'mqttsn', host: '127.0.0.1', port: 0, connectRatePerAddress: 10_000 },
    ],
    sysInterval: 0,
  });
  await broker.listen();
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'cpu') {
      const u = process.cpuUsage();
      process.send!({ cpu: u.user + u.system });
    } else if (m.cmd === 'stop') void broker.close().then(() => process.exit(0));
  });
  process.send!({ ports: { tcp: broker.address(0).port, sn: broker.address(1).port } satisfies Ports });
}

function ask<T>(child: ChildProcess, cmd: string, key: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (m: Record<string, unknown>) => {
      if (key in m) {
        child.off('message', on);
        resolve(m[key] as T);
      }
    };
    child.on('message', on);
    child.send({ cmd });
  });
}

// ---------------------------------------------------------------- load generators

const tick = () => new Promise<void>((r) => setImmediate(r));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A raw MQTT-SN publisher: CONNECT, REGISTER its topic, then PUBLISH datagrams. */
class SnPublisher {
  private readonly socket: Socket = createSocket('udp4');
  private waiting: ((p: ReturnType<typeof decodeSn>) => void) | undefined;
  topicId = 0;
  constructor(private readonly port: number) {
    this.socket.on('message', (d) => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.(decodeSn(d));
    });
  }
  private request(p: Parameters<typeof encodeSn>[0]): Promise<ReturnType<typeof decodeSn>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('MQTT-SN gateway did not answer')), 5000);
      this.waiting = (answer) => {
        clearTimeout(timer);
        resolve(answer);
      };
      this.socket.send(encodeSn(p), this.port, '127.0.0.1');
    });
  }
  async start(clientId: string, topic: string): Promise<void> {
    await new Promise<void>((r) => this.socket.bind(0, '127.0.0.1', r));
    await this.request({ type: SnType.CONNECT, will: false, cleanSession: true, protocolId: 1, duration: 300, clientId });
    const regack = (await this.request({ type: SnType.REGISTER, topicId: 0, msgId: 1, topicName: topic })) as { topicId: number };
    this.topicId = regack.topicId;
  }
  /** QoS 0: batches of 64 datagrams, each batch once the previous one left the socket (counted as sent then). */
  async blast(payload: Buffer, until: number): Promise<number> {
    const datagram = encodeSn({ type: SnType.PUBLISH, dup: false, qos: 0, retain: false, topic: { type: 0, id: this.topicId }, msgId: 0, payload });
    let sent = 0;
    while (Date.now() < until) {
      await new Promise<void>((resolve) => {
        let left = 64;
        const done = () => {
          if (--left === 0) resolve();
        };
        for (let i = 0; i < 64; i++) this.socket.send(datagram, this.port, '127.0.0.1', done);
      });
      sent += 64;
    }
    return sent;
  }
  /** QoS 1: one PUBLISH in flight, the next after its PUBACK (MQTT-SN 6.13). */
  async stopAndWait(payload: Buffer, until: number): Promise<number> {
    let msgId = 0;
    let sent = 0;
    while (Date.now() < until) {
      msgId = msgId >= 0xffff ? 1 : msgId + 1;
      await this.request({ type: SnType.PUBLISH, dup: false, qos: 1, retain: false, topic: { type: 0, id: this.topicId }, msgId, payload });
      sent++;
    }
    return sent;
  }
  close(): void {
    this.socket.send(encodeSn({ type: SnType.DISCONNECT }), this.port, '127.0.0.1', () => this.socket.close());
  }
}

async function tcpPublisher(port: number, clientId: string): Promise<MqttClient> {
  return connect({ host: '127.0.0.1', port, protocolVersion: 5, clientId, reconnect: false });
}

/** QoS 0 over TCP: 64 PUBLISHes per event-loop turn, waiting for the socket to drain as the client does. */
async function tcpBlast(client: MqttClient, topic: string, payload: Buffer, until: number): Promise<number> {
  let sent = 0;
  while (Date.now() < until) {
    const batch: Promise<unknown>[] = [];
    for (let i = 0; i < 64; i++) batch.push(client.publish(topic, payload, { qos: 0 }));
    await Promise.all(batch);
    sent += 64;
    await tick();
  }
  return sent;
}

/** QoS 1 over TCP, one in flight per publisher (the same discipline as MQTT-SN). */
async function tcpStopAndWait(client: MqttClient, topic: string, payload: Buffer, until: number): Promise<number> {
  let sent = 0;
  while (Date.now() < until) {
    await client.publish(topic, payload, { qos: 1 });
    sent++;
  }
  return sent;
}

// ---------------------------------------------------------------- the run

/** UDP datagrams the kernel dropped because a receive buffer was full (machine-wide; Linux only). */
function udpRcvbufErrors(): number | undefined {
  try {
    const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
    const names = lines[0]!.split(/\s+/);
    return Number(lines[1]!.split(/\s+/)[names.indexOf('RcvbufErrors')]);
  } catch {
    return undefined;
  }
}

interface Result {
  rcvbufErrors?: number;
  name: string;
  sent: number;
  received: number;
  seconds: number;
  brokerCpuUs: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { duration: { type: 'string', default: '5' }, publishers: { type: 'string', default: '4' }, size: { type: 'string', default: '32' } } });
  const seconds = Math.min(Math.max(Number(values.duration), 1), 30);
  const publishers = Math.min(Math.max(Number(values.publishers), 1), 64);
  const payload = Buffer.alloc(Math.min(Math.max(Number(values.size), 0), 1024), 0x61);
  const child = fork(fileURLToPath(import.meta.url), ['--broker'], { execArgv: process.env.BENCH_BROKER_PROF ? ['--cpu-prof', '--cpu-prof-dir=' + process.env.BENCH_BROKER_PROF] : [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const killer = setTimeout(() => child.kill('SIGKILL'), (seconds * 4 + 60) * 1000);
  killer.unref();
  try {
    const ports = await new Promise<Ports>((resolve) => child.once('message', (m: { ports: Ports }) => resolve(m.ports)));
    const subscriber = await connect({ host: '127.0.0.1', port: ports.tcp, protocolVersion: 5, clientId: 'bench-sub', reconnect: false });
    let received = 0;
    subscriber.on('message', () => received++);
    await subscriber.subscribe('bench/#', { qos: 1 });
    const results: Result[] = [];
    const phase = async (name: string, body: (until: number) => Promise<number[]>) => {
      await sleep(300);
      received = 0;
      const drops0 = udpRcvbufErrors();
      const cpu0 = await ask<number>(child, 'cpu', 'cpu');
      const t0 = Date.now();
      const sent = (await body(t0 + seconds * 1000)).reduce((a, b) => a + b, 0);
      const elapsed = (Date.now() - t0) / 1000;
      // The last messages in flight: until the count stops moving (at most 3 s, not counted in the rate).
      for (let prev = -1, waited = 0; received !== prev && waited < 3000; waited += 200) {
        prev = received;
        await sleep(200);
      }
      const cpu1 = await ask<number>(child, 'cpu', 'cpu');
      const drops1 = udpRcvbufErrors();
      results.push({ name, sent, received, seconds: elapsed, brokerCpuUs: cpu1 - cpu0, rcvbufErrors: drops0 === undefined || drops1 === undefined ? undefined : drops1 - drops0 });
      process.stderr.write(`${name}: ${received} of ${sent} delivered\n`);
    };

    for (const qos of [0, 1] as const) {
      const sn = Array.from({ length: publishers }, () => new SnPublisher(ports.sn));
      await Promise.all(sn.map((p, i) => p.start(`bench-sn-${qos}-${i}`, `bench/sn/${i}`)));
      await phase(`MQTT-SN QoS ${qos}`, (until) => Promise.all(sn.map((p) => (qos === 0 ? p.blast(payload, until) : p.stopAndWait(payload, until)))));
      for (const p of sn) p.close();
      const tcp = await Promise.all(Array.from({ length: publishers }, (_, i) => tcpPublisher(ports.tcp, `bench-tcp-${qos}-${i}`)));
      await phase(`MQTT/TCP QoS ${qos}`, (until) => Promise.all(tcp.map((c, i) => (qos === 0 ? tcpBlast(c, `bench/tcp/${i}`, payload, until) : tcpStopAndWait(c, `bench/tcp/${i}`, payload, until)))));
      await Promise.all(tcp.map((c) => c.end()));
    }
    await subscriber.end();

    console.log(`\nMQTT-SN gateway benchmark: ${publishers} publishers → 1 MQTT 5.0 subscriber (QoS 1 subscription), ${payload.length}-byte payloads, ${seconds} s per phase, 127.0.0.1`);
    console.log('QoS 0: publishers send batches of 64 as fast as their sockets take them (UDP: no flow control, losses counted); QoS 1: one message in flight per publisher (MQTT-SN 6.13), over TCP too.\n');
    console.log('| load | sent | delivered | delivered msg/s | broker CPU µs/msg | broker CPU % | UDP receive-buffer drops |');
    console.log('|---|---:|---:|---:|---:|---:|---:|');
    for (const r of results) {
      const rate = r.received / r.seconds;
      console.log(`| ${r.name} | ${r.sent} | ${r.received} (${((100 * r.received) / Math.max(r.sent, 1)).toFixed(1)} %) | ${Math.round(rate)} | ${(r.brokerCpuUs / Math.max(r.received, 1)).toFixed(1)} | ${((100 * r.brokerCpuUs) / 1e6 / r.seconds).toFixed(0)} | ${r.rcvbufErrors ?? 'n/a'} |`);
    }
  } finally {
    child.send({ cmd: 'stop' });
    await new Promise((r) => child.once('exit', r));
    clearTimeout(killer);
  }
}

if (process.argv.includes('--broker')) void brokerChild();
else
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
