//! Whose a written PUBLISH is (sans-I/O): the spool's message in flight, or a message
//! published directly. The client gives packet ids only as it writes, in the order the
//! messages were handed to it, and writes again, with their ids, the QoS 1 messages a
//! connection that ended left unacknowledged; this tells each `Published` and `PUBACK` apart,
//! so a direct message's acknowledgement is never taken for the spool's.

use std::collections::{HashSet, VecDeque};

/// A message handed to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Handed {
    /// The spool's message in flight.
    Spooled,
    /// A message published directly.
    Direct { at_least_once: bool },
}

/// Whose a written PUBLISH was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    /// The spool's message, written for the first time.
    Spooled,
    /// A direct message, written for the first time.
    Direct,
    /// A message written before, sent again after a reconnect.
    Resent,
}

/// Messages handed to the client and not yet written, and direct QoS 1 messages written and
/// not yet acknowledged.
#[derive(Debug, Default)]
pub(super) struct Outbound {
    unwritten: VecDeque<Handed>,
    direct: HashSet<u16>,
}

impl Outbound {
    /// A message was handed to the client.
    pub fn handed(&mut self, message: Handed) {
        self.unwritten.push_back(message);
    }

    /// The client wrote a PUBLISH with `pkid` (0 for QoS 0); `spooled` is the packet id the
    /// spool's message in flight has, if it has one.
    pub fn written(&mut self, pkid: u16, spooled: Option<u16>) -> Written {
        if pkid != 0 && (self.direct.contains(&pkid) || spooled == Some(pkid)) {
            return Written::Resent;
        }
        match self.unwritten.pop_front() {
            Some(Handed::Direct { at_least_once }) => {
                if at_least_once {
                    self.direct.insert(pkid);
                }
                Written::Direct
            }
            // None: not handed here (nothing else publishes), the spool's as before.
            Some(Handed::Spooled) | None => Written::Spooled,
        }
    }

    /// A PUBACK of `pkid`: whether it acknowledges a direct message (else it may be the
    /// spool's).
    pub fn acknowledged(&mut self, pkid: u16) -> bool {
        self.direct.remove(&pkid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_messages_get_the_packet_ids_in_the_order_they_were_handed() {
        let mut out = Outbound::default();
        out.handed(Handed::Direct {
            at_least_once: true,
        });
        out.handed(Handed::Spooled);
        out.handed(Handed::Direct {
            at_least_once: false,
        });
        assert_eq!(out.written(1, None), Written::Direct);
        assert_eq!(out.written(2, None), Written::Spooled);
        assert_eq!(out.written(0, Some(2)), Written::Direct);
        // The direct QoS 1 message's PUBACK is its own; the spool's is not taken for it.
        assert!(!out.acknowledged(2));
        assert!(out.acknowledged(1));
        assert!(!out.acknowledged(1));
    }

    #[test]
    fn messages_sent_again_after_a_reconnect_are_not_taken_for_new_ones() {
        let mut out = Outbound::default();
        out.handed(Handed::Spooled);
        out.handed(Handed::Direct {
            at_least_once: true,
        });
        assert_eq!(out.written(5, None), Written::Spooled);
        assert_eq!(out.written(6, Some(5)), Written::Direct);
        // The connection ends; the client writes both again, then a new direct message.
        out.handed(Handed::Direct {
            at_least_once: true,
        });
        assert_eq!(out.written(5, Some(5)), Written::Resent);
        assert_eq!(out.written(6, Some(5)), Written::Resent);
        assert_eq!(out.written(7, Some(5)), Written::Direct);
        assert!(out.acknowledged(6));
        assert!(out.acknowledged(7));
        assert!(!out.acknowledged(5));
    }
}
