//! A real MQTT broker (mosquitto) for the tests: on a loopback port, logging what it does to
//! `mosquitto.log` in its directory, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the broker may take to accept connections, to log a line, or to acknowledge.
const PATIENCE: Duration = Duration::from_secs(30);

/// Mosquitto on a loopback port, logging everything to `dir/mosquitto.log`; killed when
/// dropped, or stopped (SIGTERM, sessions saved) with [`Broker::stop`].
#[derive(Debug)]
pub struct Broker {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

/// How to start a [`Broker`]: [`Broker::in_dir`], then what differs from a plain broker on a
/// free port, then [`BrokerOptions::start`].
#[derive(Debug)]
pub struct BrokerOptions {
    dir: PathBuf,
    port: u16,
    persistent: bool,
    extra: String,
    also_waited: Vec<u16>,
}

impl Broker {
    /// A broker on a free loopback port, its configuration and log in `dir`; `None` when
    /// mosquitto is not installed.
    pub fn start(dir: &Path) -> Option<Broker> {
        Broker::in_dir(dir).start()
    }

    /// Options for a broker whose configuration and log (and sessions, when persistent) are
    /// in `dir`: by default on a free loopback port, keeping nothing across a restart.
    pub fn in_dir(dir: &Path) -> BrokerOptions {
        BrokerOptions {
            dir: dir.to_owned(),
            port: super::free_port(),
            persistent: false,
            extra: String::new(),
            also_waited: Vec::new(),
        }
    }

    /// SIGTERM, so that mosquitto saves its sessions, then waits for it to end.
    pub fn stop(mut self) {
        super::signal(self.child.id(), "TERM");
        let _ = self.child.wait();
    }

    /// Waits until the broker's log has `text`.
    pub fn logged(&self, text: &str) {
        let mut log = String::new();
        super::wait_for(PATIENCE, || {
            log = std::fs::read_to_string(&self.log).unwrap_or_default();
            log.contains(text).then_some(())
        })
        .unwrap_or_else(|| panic!("mosquitto never logged {text:?}:\n{log}"));
    }

    /// Publishes `messages` (topic, payload) at QoS 1; returns once the broker has
    /// acknowledged them all.
    pub fn publish(&self, messages: &[(String, String)]) {
        let id = format!("lambkin-test-pub-{}", std::process::id());
        let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", self.port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut connection) = rumqttc::Client::new(options, messages.len() + 8);
        for (topic, payload) in messages {
            client
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.as_bytes())
                .unwrap();
        }
        let mut acked = 0;
        let deadline = Instant::now() + PATIENCE;
        for event in connection.iter() {
            assert!(Instant::now() < deadline, "the broker did not acknowledge");
            if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) = event {
                acked += 1;
                if acked == messages.len() {
                    break;
                }
            }
            event.unwrap();
        }
        let _ = client.disconnect();
    }
}

impl BrokerOptions {
    /// On `port` (the same port again, for a broker started anew where the host knows it).
    pub fn port(mut self, port: u16) -> BrokerOptions {
        self.port = port;
        self
    }

    /// Keeping its sessions in its directory across a stop and a start.
    pub fn persistent(mut self) -> BrokerOptions {
        self.persistent = true;
        self
    }

    /// With `lines` added to its configuration; when they open another listener, `port` is
    /// its port, waited for as the main one is.
    pub fn config(mut self, lines: &str, port: Option<u16>) -> BrokerOptions {
        self.extra.push_str(lines);
        if !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self.also_waited.extend(port);
        self
    }

    /// Starts the broker and waits until it accepts connections on each of its ports; `None`
    /// when mosquitto is not installed.
    pub fn start(self) -> Option<Broker> {
        let binary = super::mosquitto()?;
        let BrokerOptions {
            dir,
            port,
            persistent,
            extra,
            also_waited,
        } = self;
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .map_or_else(|| "root".to_owned(), |u| u.name);
        let conf = dir.join("mosquitto.conf");
        let log = dir.join("mosquitto.log");
        // Run as root, mosquitto would switch to its own user.
        let mut text = format!(
            "user {user}\nallow_anonymous true\nlog_dest file {}\nlog_type all\n",
            log.display()
        );
        if persistent {
            text.push_str(&format!(
                "persistence true\npersistence_location {}/\n",
                dir.display()
            ));
        }
        text.push_str(&format!("listener {port} 127.0.0.1\n"));
        text.push_str(&extra);
        std::fs::write(&conf, text).unwrap();
        // What it says before its own log is open (a configuration it refuses) goes there too.
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let broker = Broker { child, port, log };
        for p in std::iter::once(port).chain(also_waited) {
            super::wait_for(PATIENCE, || {
                std::net::TcpStream::connect(("127.0.0.1", p)).ok()
            })
            .expect("mosquitto is not accepting connections");
        }
        Some(broker)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
