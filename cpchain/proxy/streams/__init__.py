"""IoT data streams on the relay proxy: Kafka-backed channels, sealed records, paid subscriptions.

A seller opens a channel with a signed request (REST, port 8003); the proxy records it in
its database and creates the channel's Kafka topic. The channel is sold like a file: a
product of type "stream" whose data hash commits to the channel on this proxy
(`wire.channel_commitment`), bought through the same escrow order. The seller binds each
paid order to the channel with a signed request carrying the stream key wrapped to the
buyer (the stream SELLER_DATA; the proxy claims proxyFetched); the buyer's first
subscription is the delivery (proxyDelivered with the commitment as deliverHash).

The seller seals every record (AES-256-GCM under the stream key, sequence number and
channel bound) before it leaves, and publishes over WebSocket (8002) or REST with a publish
token only it can make; the proxy and Kafka see ciphertext and sequence numbers. A buyer
reads with a token bound to its paid order, live or from an offset, and its client opens
each record in sequence, detecting tampering, replays, gaps and reordering; resuming from
the saved cursor delivers every record once.

Modules: `wire` (formats, tokens), `records` (sealing, integrity), `rules` (decisions,
pure), `model`, `registry` (SQLite), `kafka` (kafka-python off the reactor), `service`
(logic), `ws` and `rest` (servers), `server` (assembly), `client` (library and CLI),
`kafka_utils` (bin/kafka-utils). This package must not edit the proxy's trade tables or
the control channel; it shares the proxy's reactor, account, chain gateway (claims are
recorded by cpchain.proxy.onchain) and TLS certificate.
"""
