/**
 * A relay bench peer process, forked by relay-processes.ts: real
 * socket.io-client 2.x peers speaking the socket.io-pull-stream relay
 * sub-protocol (test/helpers), some sending and some receiving, in their own
 * event loop so that the bench's and each other's work does not bound the
 * relay. It answers over IPC; see relay-ipc.ts for the messages.
 */
import { randomUUID } from 'node:crypto'
import { inspect } from 'node:util'
import { connect, type Client } from '../test/helpers/clients.js'
import { accepted, send, Source } from '../test/helpers/streams.js'
import { errorText } from './error-text.js'
import { chunksOf } from './relay-data.js'
import { isToPeer, type FromPeer, type PairPlan, type ToPeer } from './relay-ipc.js'

const PROGRESS_EVERY_MS = 1000

interface Sender {
  plan: PairPlan
  client: Client
  chunks: Buffer[]
  /** Its stream's name once the server has accepted it. */
  stream: string | undefined
  /** The way back, opened as a dialer does; nothing comes on it. */
  back: Source | undefined
}
interface Receiver { plan: PairPlan, client: Client, source: Source | undefined }

let senders: Sender[] = []
let receivers: Receiver[] = []

function post (message: FromPeer): void {
  process.send?.(message)
}

function fail (err: unknown): void {
  post({ type: 'failed', error: err instanceof Error ? err.message : String(err) })
}

async function joined (url: string, address: string): Promise<Client> {
  const client = await connect(url, 'v2')
  const [err] = await client.request('ss-join', address, '')
  if (err !== null) throw new Error(`join of ${address} failed: ${errorText(err)}`)
  return client
}

/** Answers the one dial from its sender, as libp2p-websocket-star's listener does, and reports the stream once it ends. */
function listen (receiver: Receiver): void {
  const onIncoming = (dialId: string, from: string, answer: () => void): void => {
    if (from !== receiver.plan.from) { fail(`receiver ${receiver.plan.pair} dialed by ${from}`); return }
    receiver.client.socket.off('ss-incomming', onIncoming)
    const source = new Source(receiver.client, `${dialId}.dialer`)
    receiver.source = source
    answer()
    source.done.then((r) => {
      post({ type: 'received', pair: receiver.plan.pair, bytes: r.bytes, chunks: r.chunks, sha256: r.sha256, end: r.end === true ? true : errorText(r.end) })
    }, fail)
  }
  receiver.client.socket.on('ss-incomming', onIncoming)
}

async function setup (url: string, senderPlans: PairPlan[], receiverPlans: PairPlan[]): Promise<void> {
  receivers = await Promise.all(receiverPlans.map(async (plan) => ({ plan, client: await joined(url, plan.to), source: undefined })))
  for (const receiver of receivers) listen(receiver)
  senders = await Promise.all(senderPlans.map(async (plan) => ({
    plan, client: await joined(url, plan.from), chunks: [...chunksOf(plan.pair, plan.count, plan.chunkBytes)], stream: undefined, back: undefined
  })))
  if (receivers.length > 0) {
    setInterval(() => {
      let bytes = 0
      for (const r of receivers) bytes += r.source?.received ?? 0
      post({ type: 'progress', bytes })
    }, PROGRESS_EVERY_MS).unref()
  }
  post({ type: 'joined' })
}

/** Dials as relay() in test/helpers/streams.ts does, the listener being in another process. */
async function dial (sender: Sender): Promise<void> {
  const dialId = randomUUID()
  const stream = `${dialId}.dialer`
  const maySend = accepted(sender.client, stream)
  sender.back = new Source(sender.client, `${dialId}.listener`)
  const ack = await sender.client.request('ss-dial', sender.plan.from, sender.plan.to, dialId)
  const errors = ack.filter((x) => x !== undefined && x !== null)
  if (errors.length > 0) throw new Error(`dial of pair ${sender.plan.pair} failed: ${errors.map(errorText).join(', ')}`)
  await maySend
  sender.stream = stream
}

async function handle (message: ToPeer): Promise<void> {
  switch (message.type) {
    case 'setup':
      await setup(message.url, message.senders, message.receivers)
      return
    case 'dial':
      await Promise.all(senders.map(dial))
      post({ type: 'dialed' })
      return
    case 'go':
      for (const sender of senders) {
        if (sender.stream === undefined) throw new Error(`pair ${sender.plan.pair} was not dialed`)
        send(sender.client, sender.stream, sender.chunks)
        sender.chunks = []
      }
  }
}

process.on('message', (message: unknown) => {
  if (!isToPeer(message)) { fail(`unexpected message ${inspect(message)}`); return }
  handle(message).catch(fail)
})
// the bench has gone: so does this process, and its connections with it
process.on('disconnect', () => { process.exit(0) })
