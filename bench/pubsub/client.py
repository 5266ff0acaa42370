"""The Python side of `lambkin-bench pubsub`: one publisher or one subscriber, written against
the real client libraries as a user would, through Greengrass IPC (awsiotsdk's
GreengrassCoreIPCClientV2, connecting from SVCUID and the socket path in its environment) or
MQTT (paho-mqtt, QoS 0).

Every message is 256 bytes: sequence number (u64), the publisher's wall clock at the
publish call in ns (u64), the phase (u8: 0 latency, 1 throughput, 2 end), then padding.

    client.py ipc|mqtt sub --topic T [--host H --port P] [--idle S] [--deadline S]
        prints "ready" once subscribed, then one JSON line with what it received.
    client.py ipc|mqtt pub --topic T [--host H --port P] --latency N --interval-us U
                          --throughput N --window W
        N paced messages (each awaited on IPC), then N as fast as the client goes with at
        most W publishes awaiting their response, then the end marker; one JSON line.
"""

from __future__ import annotations

import argparse
import collections
import json
import socket
import struct
import sys
import threading
import time

SIZE = 256
HEADER = struct.Struct(">QQB")
LATENCY, THROUGHPUT, END = 0, 1, 2
PAD = b"x" * (SIZE - HEADER.size)


def message(seq: int, phase: int) -> bytes:
    return HEADER.pack(seq, time.time_ns(), phase) + PAD


class Received:
    """What a subscriber records; `on_payload` may run on any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency_ns: list[int] = []
        self.tp_received = 0
        self.tp_first_send_ns = 0
        self.tp_last_recv_ns = 0
        self.bad = 0
        self.last_at = 0.0
        self.ended = threading.Event()
        self.cpu_start = 0.0

    def start(self) -> None:
        """Subscribed: CPU time counts from here."""
        self.cpu_start = time.process_time()

    def on_payload(self, payload: bytes) -> None:
        now = time.time_ns()
        with self.lock:
            self.last_at = time.monotonic()
            if len(payload) != SIZE:
                self.bad += 1
                return
            _seq, sent, phase = HEADER.unpack_from(payload)
            if phase == LATENCY:
                self.latency_ns.append(now - sent)
            elif phase == THROUGHPUT:
                self.tp_received += 1
                if self.tp_first_send_ns == 0 or sent < self.tp_first_send_ns:
                    self.tp_first_send_ns = sent
                self.tp_last_recv_ns = max(self.tp_last_recv_ns, now)
            elif phase == END:
                self.ended.set()
            else:
                self.bad += 1

    def wait(self, idle: float, deadline: float) -> None:
        """Until the end marker, `idle` seconds without a message after the first one, or
        `deadline` seconds in all."""
        give_up = time.monotonic() + deadline
        while not self.ended.wait(0.05):
            now = time.monotonic()
            with self.lock:
                last = self.last_at
            if now > give_up or (last and now - last > idle):
                return

    def report(self) -> dict:
        with self.lock:
            return {
                "latency_ns": self.latency_ns,
                "tp_received": self.tp_received,
                "tp_first_send_ns": self.tp_first_send_ns,
                "tp_last_recv_ns": self.tp_last_recv_ns,
                "ended": self.ended.is_set(),
                "bad": self.bad,
                "cpu_seconds": time.process_time() - self.cpu_start,
            }


def ready() -> None:
    print("ready", flush=True)


# ----------------------------------------------------------------------------- IPC

def ipc_sub(args) -> dict:
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    received = Received()

    def on_event(event) -> None:
        if event.binary_message is not None:
            received.on_payload(event.binary_message.message)
        else:
            with received.lock:
                received.bad += 1

    client = GreengrassCoreIPCClientV2()
    client.subscribe_to_topic(topic=args.topic, on_stream_event=on_event)
    received.start()
    ready()
    received.wait(args.idle, args.deadline)
    report = received.report()
    client.close()
    return report


def ipc_pub(args) -> dict:
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    from awsiot.greengrasscoreipc.model import BinaryMessage, PublishMessage

    client = GreengrassCoreIPCClientV2()
    cpu_start = time.process_time()

    def publish(seq: int, phase: int):
        return client.publish_to_topic_async(
            topic=args.topic,
            publish_message=PublishMessage(binary_message=BinaryMessage(message=message(seq, phase))))

    seq = 0
    interval = args.interval_us / 1e6
    next_at = time.monotonic()
    for _ in range(args.latency):
        publish(seq, LATENCY).result()
        seq += 1
        next_at += interval
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    started = time.monotonic()
    window: collections.deque = collections.deque()
    for _ in range(args.throughput):
        if len(window) >= args.window:
            window.popleft().result()
        window.append(publish(seq, THROUGHPUT))
        seq += 1
    while window:
        window.popleft().result()
    seconds = time.monotonic() - started
    publish(seq, END).result()
    client.close()
    return {"published": seq + 1, "throughput_seconds": seconds,
            "cpu_seconds": time.process_time() - cpu_start}


# ----------------------------------------------------------------------------- MQTT

def mqtt_client(args, name: str):
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name,
                         protocol=mqtt.MQTTv311)
    connected = threading.Event()
    client.on_connect = lambda c, u, flags, rc, props: connected.set()
    client.connect(args.host, args.port, keepalive=60)
    # paho leaves Nagle's algorithm on; paced small publishes would wait for delayed ACKs.
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_start()
    if not connected.wait(10):
        sys.exit(f"no CONNACK from {args.host}:{args.port} within 10 s")
    return client


def mqtt_sub(args) -> dict:
    received = Received()
    client = mqtt_client(args, args.name)
    subscribed = threading.Event()
    client.on_subscribe = lambda c, u, mid, codes, props: subscribed.set()
    client.on_message = lambda c, u, msg: received.on_payload(msg.payload)
    client.subscribe(args.topic, qos=0)
    if not subscribed.wait(10):
        sys.exit("no SUBACK within 10 s")
    received.start()
    ready()
    received.wait(args.idle, args.deadline)
    report = received.report()
    client.disconnect()
    client.loop_stop()
    return report


def mqtt_pub(args) -> dict:
    client = mqtt_client(args, args.name)
    cpu_start = time.process_time()
    seq = 0
    interval = args.interval_us / 1e6
    next_at = time.monotonic()
    for _ in range(args.latency):
        client.publish(args.topic, message(seq, LATENCY), qos=0)
        seq += 1
        next_at += interval
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    started = time.monotonic()
    last = None
    for _ in range(args.throughput):
        last = client.publish(args.topic, message(seq, THROUGHPUT), qos=0)
        seq += 1
    if last is not None:
        last.wait_for_publish(60)
    seconds = time.monotonic() - started
    client.publish(args.topic, message(seq, END), qos=0).wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    return {"published": seq + 1, "throughput_seconds": seconds,
            "cpu_seconds": time.process_time() - cpu_start}


# ------------------------------------------------------------------ MQTT → function

ECHO, FN_IN, FN_OUT = "lambkin-bench/echo", "lambkin-bench/fn/in", "lambkin-bench/fn/out"


def trigger(args) -> dict:
    """Paced paho publishes through mosquitto: first to a paho subscriber (the broker's own
    delivery), then to the topic that triggers Lambkin's function, whose handler publishes
    the time it was called back to the subscriber."""
    sub = mqtt_client(args, args.name + "-sub")
    pub = mqtt_client(args, args.name + "-pub")
    lock = threading.Lock()
    got: dict[str, list[tuple[dict, int]]] = {ECHO: [], FN_OUT: []}
    subscribed = threading.Event()

    def on_message(c, u, msg) -> None:
        now = time.time_ns()
        with lock:
            got.setdefault(msg.topic, []).append((json.loads(msg.payload), now))

    sub.on_message = on_message
    sub.on_subscribe = lambda c, u, mid, codes, props: subscribed.set()
    sub.subscribe([(ECHO, 0), (FN_OUT, 0)])
    if not subscribed.wait(10):
        sys.exit("no SUBACK within 10 s")
    ready()

    def send(topic: str, seq: int) -> None:
        body = {"seq": seq, "sent_ns": time.time_ns(), "pad": ""}
        body["pad"] = "x" * max(0, SIZE - len(json.dumps(body)))
        pub.publish(topic, json.dumps(body), qos=0)

    def paced(topic: str) -> None:
        interval = args.interval_us / 1e6
        next_at = time.monotonic()
        for seq in range(args.latency):
            send(topic, seq)
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    def settle(topic: str) -> None:
        deadline = time.monotonic() + args.idle
        while time.monotonic() < deadline:
            with lock:
                if len([m for m, _ in got[topic] if m["seq"] >= 0]) >= args.latency:
                    return
            time.sleep(0.01)

    paced(ECHO)
    settle(ECHO)
    # The host subscribes to the broker once it is connected and the function deployed:
    # publish a warm-up event until its answer comes back.
    deadline = time.monotonic() + 60
    while True:
        send(FN_IN, -1)
        wait_until = time.monotonic() + 1
        while time.monotonic() < wait_until:
            with lock:
                if got[FN_OUT]:
                    break
            time.sleep(0.01)
        with lock:
            if got[FN_OUT]:
                break
        if time.monotonic() > deadline:
            sys.exit("the function never answered")
    time.sleep(0.5)
    paced(FN_IN)
    settle(FN_OUT)
    with lock:
        broker = [now - m["sent_ns"] for m, now in got[ECHO]]
        answers = [(m, now) for m, now in got[FN_OUT] if m["seq"] >= 0]
    sub.disconnect()
    pub.disconnect()
    return {
        "broker_ns": broker,
        "to_handler_ns": [m["handler_ns"] - m["sent_ns"] for m, _ in answers],
        "round_trip_ns": [now - m["sent_ns"] for m, now in answers],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("transport", choices=["ipc", "mqtt"])
    p.add_argument("role", choices=["pub", "sub", "trigger"])
    p.add_argument("--topic", default="bench/0")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--name", default="bench")
    p.add_argument("--latency", type=int, default=1000)
    p.add_argument("--interval-us", type=int, default=5000)
    p.add_argument("--throughput", type=int, default=10000)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--idle", type=float, default=3.0)
    p.add_argument("--deadline", type=float, default=300.0)
    args = p.parse_args()
    run = {("ipc", "sub"): ipc_sub, ("ipc", "pub"): ipc_pub,
           ("mqtt", "sub"): mqtt_sub, ("mqtt", "pub"): mqtt_pub, ("mqtt", "trigger"): trigger}[(args.transport, args.role)]
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
