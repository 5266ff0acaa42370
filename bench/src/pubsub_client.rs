//! `lambkin-bench pubsub-client`: the Rust side of the messaging benchmark, one publisher or
//! one subscriber per process, the same protocol as `bench/pubsub/client.py`:
//!
//! - Greengrass IPC: a small client written on `lambkin-proto`'s event-stream codec and RPC
//!   envelope (CONNECT with the component's SVCUID, PublishToTopic / SubscribeToTopic with
//!   binary messages), the way the SDK clients speak it (`greengrass-ipc.md`).
//! - MQTT: rumqttc (MQTT 3.1.1), QoS 0.
//!
//! Every message is [`SIZE`] bytes: sequence number (u64 BE), the publisher's wall clock at
//! the publish call in ns (u64 BE), the phase (u8), then padding. A subscriber prints `ready`
//! once subscribed, then one JSON line ([`Received::report`]); a publisher prints one JSON
//! line when it has sent everything.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use lambkin_proto::eventstream::{Decoder, Header};
use lambkin_proto::ipc::envelope::{
    CONTENT_TYPE, CONTENT_TYPE_JSON, OPERATION, PROTOCOL_VERSION, SERVICE_MODEL_TYPE, VERSION,
};
use lambkin_proto::ipc::{MessageFlags, MessageType, RpcMessage};

/// Every message's size in bytes.
pub const SIZE: usize = 256;
const HEADER_LEN: usize = 17;
/// Phases, in the message's byte 16.
const LATENCY: u8 = 0;
const THROUGHPUT: u8 = 1;
const END: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Ipc,
    Mqtt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Pub,
    Sub,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    pub transport: Transport,
    pub role: Role,
    #[arg(long)]
    pub topic: String,
    /// MQTT broker.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// MQTT client id.
    #[arg(long, default_value = "bench")]
    pub name: String,
    /// Paced messages for the latency phase.
    #[arg(long, default_value_t = 1000)]
    pub latency: usize,
    /// Time between two latency-phase publishes.
    #[arg(long, default_value_t = 5000)]
    pub interval_us: u64,
    /// Messages of the throughput phase.
    #[arg(long, default_value_t = 10_000)]
    pub throughput: usize,
    /// IPC publishes awaiting their response at most, in the throughput phase.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// A subscriber stops this many seconds after its last message.
    #[arg(long, default_value_t = 3.0)]
    pub idle: f64,
    /// A subscriber stops after this many seconds in all.
    #[arg(long, default_value_t = 300.0)]
    pub deadline: f64,
}

pub fn main(args: &Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pubsub-client: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match (args.transport, args.role) {
            (Transport::Ipc, Role::Sub) => ipc_sub(args).await,
            (Transport::Ipc, Role::Pub) => ipc_pub(args).await,
            (Transport::Mqtt, Role::Sub) => mqtt_sub(args).await,
            (Transport::Mqtt, Role::Pub) => mqtt_pub(args).await,
        }
    });
    match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pubsub-client: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn message(seq: u64, phase: u8) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIZE);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&now_ns().to_be_bytes());
    m.push(phase);
    m.resize(SIZE, b'x');
    m
}

fn ready() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    Ok(())
}

/// What a subscriber records.
#[derive(Debug, Default)]
struct Received {
    latency_ns: Vec<u64>,
    tp_received: u64,
    tp_first_send_ns: u64,
    tp_last_recv_ns: u64,
    ended: bool,
    bad: u64,
    /// CPU time used before subscribing, in ns.
    cpu_start: u64,
}

impl Received {
    fn on_payload(&mut self, payload: &[u8]) {
        let now = now_ns();
        if payload.len() != SIZE {
            self.bad += 1;
            return;
        }
        let mut sent = [0u8; 8];
        sent.copy_from_slice(&payload[8..16]);
        let sent = u64::from_be_bytes(sent);
        match payload[HEADER_LEN - 1] {
            LATENCY => self.latency_ns.push(now.saturating_sub(sent)),
            THROUGHPUT => {
                self.tp_received += 1;
                if self.tp_first_send_ns == 0 || sent < self.tp_first_send_ns {
                    self.tp_first_send_ns = sent;
                }
                self.tp_last_recv_ns = self.tp_last_recv_ns.max(now);
            }
            END => self.ended = true,
            _ => self.bad += 1,
        }
    }

    fn report(&self) -> String {
        serde_json::json!({
            "latency_ns": self.latency_ns,
            "tp_received": self.tp_received,
            "tp_first_send_ns": self.tp_first_send_ns,
            "tp_last_recv_ns": self.tp_last_recv_ns,
            "ended": self.ended,
            "bad": self.bad,
            "cpu_seconds": cpu_ns().saturating_sub(self.cpu_start) as f64 / 1e9,
        })
        .to_string()
    }
}

/// CPU time this process has used so far, in ns.
fn cpu_ns() -> u64 {
    crate::procfs::cpu_ns(std::process::id()).unwrap_or(0)
}

/// The publisher's result, with the CPU time used since `cpu_start` (ns).
fn published(count: u64, seconds: f64, cpu_start: u64) -> String {
    let cpu_seconds = cpu_ns().saturating_sub(cpu_start) as f64 / 1e9;
    serde_json::json!({"published": count, "throughput_seconds": seconds, "cpu_seconds": cpu_seconds})
        .to_string()
}

// ------------------------------------------------------------------------------------ IPC

const SUBSCRIPTION_EVENT: &str = "aws.greengrass#SubscriptionResponseMessage";

/// One IPC connection: the socket and the frames read from it.
#[derive(Debug)]
struct Ipc {
    stream: UnixStream,
    decoder: Decoder,
    read_buf: Vec<u8>,
    next_stream: i32,
}

impl Ipc {
    /// Connects with the environment a component gets (SVCUID and the socket's path).
    async fn connect_from_env() -> anyhow::Result<Self> {
        let path: PathBuf = std::env::var_os("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT")
            .ok_or_else(|| {
                anyhow!("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT is not set")
            })?
            .into();
        let token = std::env::var("SVCUID").context("SVCUID is not set")?;
        let stream = UnixStream::connect(&path)
            .await
            .with_context(|| format!("cannot connect to {}", path.display()))?;
        let mut ipc = Self {
            stream,
            decoder: Decoder::new(),
            read_buf: vec![0; 64 * 1024],
            next_stream: 1,
        };
        let connect = RpcMessage::new(MessageType::Connect, MessageFlags::NONE, 0)
            .with_header(Header::string(VERSION, PROTOCOL_VERSION))
            .with_payload(serde_json::json!({ "authToken": token }).to_string())
            .to_frame()?;
        ipc.stream.write_all(&connect.encode()).await?;
        let ack = ipc.next_message().await?;
        if ack.message_type != MessageType::ConnectAck
            || !ack.flags.contains(MessageFlags::CONNECTION_ACCEPTED)
        {
            bail!(
                "the IPC server refused the connection ({} flags {})",
                ack.message_type,
                ack.flags.0
            );
        }
        Ok(ipc)
    }

    async fn next_message(&mut self) -> anyhow::Result<RpcMessage> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return RpcMessage::from_frame(&frame)
                    .ok_or_else(|| anyhow!("a frame without the RPC control headers"));
            }
            let n = self.stream.read(&mut self.read_buf).await?;
            if n == 0 {
                bail!("the IPC server closed the connection");
            }
            self.decoder.push(&self.read_buf[..n]);
        }
    }

    /// Appends an operation's first message (its activation) to `out`; returns its stream.
    fn request(
        &mut self,
        operation: &str,
        payload: &serde_json::Value,
        out: &mut Vec<u8>,
    ) -> anyhow::Result<i32> {
        let stream = self.next_stream;
        self.next_stream += 1;
        RpcMessage::new(MessageType::ApplicationMessage, MessageFlags::NONE, stream)
            .with_header(Header::string(CONTENT_TYPE, CONTENT_TYPE_JSON))
            .with_header(Header::string(
                SERVICE_MODEL_TYPE,
                format!("aws.greengrass#{operation}Request"),
            ))
            .with_header(Header::string(
                OPERATION,
                format!("aws.greengrass#{operation}"),
            ))
            .with_payload(payload.to_string())
            .to_frame()?
            .encode_into(out);
        Ok(stream)
    }

    fn publish(&mut self, topic: &str, message: &[u8], out: &mut Vec<u8>) -> anyhow::Result<i32> {
        let body = serde_json::json!({
            "topic": topic,
            "publishMessage": {"binaryMessage": {
                "message": base64::engine::general_purpose::STANDARD.encode(message)
            }},
        });
        self.request("PublishToTopic", &body, out)
    }
}

/// Fails on an error answer; true when `m` ends its stream (a request's response).
fn check_answer(m: &RpcMessage) -> anyhow::Result<bool> {
    match m.message_type {
        MessageType::ApplicationMessage => Ok(m.flags.terminates_stream()),
        MessageType::Ping | MessageType::PingResponse => Ok(false),
        other => bail!(
            "the IPC server answered {other} on stream {}: {}",
            m.stream_id,
            String::from_utf8_lossy(&m.payload)
        ),
    }
}

async fn ipc_sub(args: &Args) -> anyhow::Result<String> {
    let mut ipc = Ipc::connect_from_env().await?;
    let mut out = Vec::new();
    let stream = ipc.request(
        "SubscribeToTopic",
        &serde_json::json!({ "topic": args.topic }),
        &mut out,
    )?;
    ipc.stream.write_all(&out).await?;
    loop {
        let m = ipc.next_message().await?;
        check_answer(&m)?;
        if m.stream_id == stream && m.message_type == MessageType::ApplicationMessage {
            break;
        }
    }
    let mut received = Received {
        cpu_start: cpu_ns(),
        ..Received::default()
    };
    ready()?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.deadline);
    let idle = Duration::from_secs_f64(args.idle);
    let mut any = false;
    while !received.ended {
        let wait = if any {
            idle
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        let Ok(m) = tokio::time::timeout(wait, ipc.next_message()).await else {
            break;
        };
        let m = m?;
        check_answer(&m)?;
        if m.stream_id != stream || m.string_header(SERVICE_MODEL_TYPE) != Some(SUBSCRIPTION_EVENT)
        {
            continue;
        }
        let event: serde_json::Value = serde_json::from_slice(&m.payload)?;
        let Some(data) = event
            .pointer("/binaryMessage/message")
            .and_then(serde_json::Value::as_str)
        else {
            received.bad += 1;
            continue;
        };
        let payload = base64::engine::general_purpose::STANDARD.decode(data)?;
        received.on_payload(&payload);
        any = true;
        if Instant::now() > deadline {
            break;
        }
    }
    Ok(received.report())
}

async fn ipc_pub(args: &Args) -> anyhow::Result<String> {
    let mut ipc = Ipc::connect_from_env().await?;
    let cpu_start = cpu_ns();
    let mut seq = 0u64;
    let mut out = Vec::new();
    let interval = Duration::from_micros(args.interval_us);
    let mut next_at = tokio::time::Instant::now();
    for _ in 0..args.latency {
        out.clear();
        ipc.publish(&args.topic, &message(seq, LATENCY), &mut out)?;
        ipc.stream.write_all(&out).await?;
        while !check_answer(&ipc.next_message().await?)? {}
        seq += 1;
        next_at += interval;
        tokio::time::sleep_until(next_at).await;
    }
    // Throughput: up to `window` publishes awaiting their response; what is ready to go is
    // written at once.
    let started = Instant::now();
    let window = args.window.max(1);
    let mut outstanding = 0usize;
    let mut sent = 0usize;
    while sent < args.throughput || outstanding > 0 {
        out.clear();
        while outstanding < window && sent < args.throughput {
            ipc.publish(&args.topic, &message(seq, THROUGHPUT), &mut out)?;
            seq += 1;
            sent += 1;
            outstanding += 1;
        }
        if !out.is_empty() {
            ipc.stream.write_all(&out).await?;
        }
        if check_answer(&ipc.next_message().await?)? {
            outstanding -= 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    out.clear();
    ipc.publish(&args.topic, &message(seq, END), &mut out)?;
    ipc.stream.write_all(&out).await?;
    while !check_answer(&ipc.next_message().await?)? {}
    Ok(published(seq + 1, seconds, cpu_start))
}

// ----------------------------------------------------------------------------------- MQTT

fn mqtt_options(args: &Args) -> rumqttc::MqttOptions {
    let mut options = rumqttc::MqttOptions::new(&args.name, &args.host, args.port);
    options.set_keep_alive(Duration::from_secs(60));
    options
}

async fn mqtt_sub(args: &Args) -> anyhow::Result<String> {
    use rumqttc::{Event, Packet, QoS};
    let (client, mut events) = rumqttc::AsyncClient::new(mqtt_options(args), 1024);
    client.subscribe(&args.topic, QoS::AtMostOnce).await?;
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = events.poll().await? {
            break;
        }
    }
    let mut received = Received {
        cpu_start: cpu_ns(),
        ..Received::default()
    };
    ready()?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.deadline);
    let idle = Duration::from_secs_f64(args.idle);
    let mut any = false;
    while !received.ended {
        let wait = if any {
            idle
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        let Ok(event) = tokio::time::timeout(wait, events.poll()).await else {
            break;
        };
        if let Event::Incoming(Packet::Publish(p)) = event? {
            received.on_payload(&p.payload);
            any = true;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    let _ = client.try_disconnect();
    Ok(received.report())
}

async fn mqtt_pub(args: &Args) -> anyhow::Result<String> {
    use rumqttc::{Event, Outgoing, Packet, QoS};
    let (client, mut events) = rumqttc::AsyncClient::new(mqtt_options(args), 1024);
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = events.poll().await? {
            break;
        }
    }
    // The event loop writes what the client queues; it runs beside the publishing loop and
    // counts the publishes written to the socket.
    let total = args.latency + args.throughput + 1;
    let (written_tx, mut written_rx) = tokio::sync::watch::channel(0usize);
    let driver = tokio::spawn(async move {
        let mut written = 0usize;
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                    written += 1;
                    let _ = written_tx.send(written);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(anyhow!("MQTT connection: {e}")),
            }
        }
    });
    let cpu_start = cpu_ns();
    let mut seq = 0u64;
    let interval = Duration::from_micros(args.interval_us);
    let mut next_at = tokio::time::Instant::now();
    for _ in 0..args.latency {
        client
            .publish(&args.topic, QoS::AtMostOnce, false, message(seq, LATENCY))
            .await?;
        seq += 1;
        next_at += interval;
        tokio::time::sleep_until(next_at).await;
    }
    let started = Instant::now();
    for _ in 0..args.throughput {
        client
            .publish(
                &args.topic,
                QoS::AtMostOnce,
                false,
                message(seq, THROUGHPUT),
            )
            .await?;
        seq += 1;
    }
    let before_end = total - 1;
    written_rx
        .wait_for(|w| *w >= before_end)
        .await
        .map_err(|_| anyhow!("the MQTT connection ended before every publish was written"))?;
    let seconds = started.elapsed().as_secs_f64();
    client
        .publish(&args.topic, QoS::AtMostOnce, false, message(seq, END))
        .await?;
    written_rx
        .wait_for(|w| *w >= total)
        .await
        .map_err(|_| anyhow!("the MQTT connection ended before the end marker was written"))?;
    client.disconnect().await?;
    match tokio::time::timeout(Duration::from_secs(5), driver).await {
        Ok(Ok(result)) => result?,
        Ok(Err(e)) => bail!("the MQTT event loop failed: {e}"),
        Err(_) => {}
    }
    Ok(published(seq + 1, seconds, cpu_start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_sorts_messages_by_phase() {
        let mut r = Received::default();
        r.on_payload(&message(0, LATENCY));
        r.on_payload(&message(1, THROUGHPUT));
        r.on_payload(&message(2, THROUGHPUT));
        assert!(!r.ended);
        r.on_payload(&message(3, END));
        r.on_payload(b"short");
        let mut wrong_phase = message(4, LATENCY);
        wrong_phase[HEADER_LEN - 1] = 9;
        r.on_payload(&wrong_phase);
        assert_eq!(r.latency_ns.len(), 1);
        assert_eq!(r.tp_received, 2);
        assert!(r.tp_first_send_ns > 0 && r.tp_last_recv_ns >= r.tp_first_send_ns);
        assert!(r.ended);
        assert_eq!(r.bad, 2);
        assert_eq!(message(7, LATENCY).len(), SIZE);
    }
}
