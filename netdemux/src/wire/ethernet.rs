//! Ethernet II headers with up to two VLAN tags (802.1Q, 802.1ad).

use netdemux_common::wire::{ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, VLAN_TAG_LEN};

use super::Error;

/// An Ethernet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// VLAN tags, outermost first: (TPID, TCI).
    pub vlans: [Option<(u16, u16)>; 2],
    /// The ethertype after the tags.
    pub ethertype: u16,
}

fn be16(b: &[u8], at: usize) -> Result<u16, Error> {
    Ok(u16::from_be_bytes([
        *b.get(at).ok_or(Error::Truncated)?,
        *b.get(at + 1).ok_or(Error::Truncated)?,
    ]))
}

impl EthernetRepr {
    /// Parses the header at the start of `frame`; returns it and its length.
    pub fn parse(frame: &[u8]) -> Result<(EthernetRepr, usize), Error> {
        if frame.len() < ETH_HLEN {
            return Err(Error::Truncated);
        }
        let mut r = EthernetRepr {
            dst: frame[0..6].try_into().map_err(|_| Error::Truncated)?,
            src: frame[6..12].try_into().map_err(|_| Error::Truncated)?,
            vlans: [None, None],
            ethertype: be16(frame, 12)?,
        };
        let mut len = ETH_HLEN;
        for slot in r.vlans.iter_mut() {
            if r.ethertype != ETH_P_8021Q && r.ethertype != ETH_P_8021AD {
                break;
            }
            *slot = Some((r.ethertype, be16(frame, len)?));
            r.ethertype = be16(frame, len + 2)?;
            len += VLAN_TAG_LEN;
        }
        Ok((r, len))
    }

    /// Length of the header, tags included.
    pub fn header_len(&self) -> usize {
        ETH_HLEN + VLAN_TAG_LEN * self.vlans.iter().flatten().count()
    }

    /// Writes the header at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.header_len();
        let out = buf.get_mut(..len).ok_or(Error::Truncated)?;
        out[0..6].copy_from_slice(&self.dst);
        out[6..12].copy_from_slice(&self.src);
        let mut at = 12;
        for (tpid, tci) in self.vlans.iter().flatten() {
            out[at..at + 2].copy_from_slice(&tpid.to_be_bytes());
            out[at + 2..at + 4].copy_from_slice(&tci.to_be_bytes());
            at += 4;
        }
        out[at..at + 2].copy_from_slice(&self.ethertype.to_be_bytes());
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use netdemux_common::wire::{ETH_P_IPV4, ETH_P_IPV6};

    use super::*;

    #[test]
    fn round_trips_with_and_without_tags() {
        for vlans in [
            [None, None],
            [Some((ETH_P_8021Q, 100)), None],
            [Some((ETH_P_8021AD, 7)), Some((ETH_P_8021Q, 100))],
        ] {
            let r = EthernetRepr {
                dst: [2, 0, 0, 0, 0, 2],
                src: [2, 0, 0, 0, 0, 1],
                vlans,
                ethertype: ETH_P_IPV6,
            };
            let mut buf = [0u8; 32];
            let n = r.emit(&mut buf).unwrap();
            assert_eq!(EthernetRepr::parse(&buf[..n]).unwrap(), (r, n));
        }
    }

    #[test]
    fn truncation_is_an_error() {
        let r = EthernetRepr {
            dst: [0; 6],
            src: [0; 6],
            vlans: [Some((ETH_P_8021Q, 1)), None],
            ethertype: ETH_P_IPV4,
        };
        let mut buf = [0u8; 18];
        r.emit(&mut buf).unwrap();
        for cut in 0..18 {
            assert!(EthernetRepr::parse(&buf[..cut]).is_err(), "{cut}");
        }
        assert_eq!(r.emit(&mut [0u8; 17]), Err(Error::Truncated));
    }
}
