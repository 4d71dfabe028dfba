//! Frame views and small wire types the switch needs beyond `smoltcp::wire`.
//!
//! The switch only reads the 14-byte Ethernet header (plus the TPID of an
//! 802.1Q tag to size-check tagged frames). Parsing is done with
//! [`smoltcp::wire::EthernetFrame`] views, `new_checked` on everything that
//! came from a port; [`MacAddr`] is the compact key the MAC table stores.

pub mod build;
pub mod checksum;
pub mod coalesce;
pub mod ipv4;
pub mod vnet;
pub mod vxlan;

use std::fmt;
use std::str::FromStr;

/// Length of an Ethernet header without VLAN tag.
pub const ETH_HEADER_LEN: usize = 14;
/// Extra bytes an 802.1Q (or 802.1ad) tag adds to a frame.
pub const VLAN_TAG_LEN: usize = 4;
/// TPIDs that mark a VLAN-tagged frame.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

/// A 48-bit MAC address packed into the low bits of a `u64` (network order:
/// the first octet is the most significant), so it hashes and compares as
/// one integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(u64);

/// Error from parsing a MAC address string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a MAC address (expected six hex octets like 02:00:5e:10:00:01)")]
pub struct MacParseError(pub String);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr(0xffff_ffff_ffff);
    pub const ZERO: MacAddr = MacAddr(0);

    pub const fn from_bytes(b: [u8; 6]) -> Self {
        MacAddr(
            ((b[0] as u64) << 40)
                | ((b[1] as u64) << 32)
                | ((b[2] as u64) << 24)
                | ((b[3] as u64) << 16)
                | ((b[4] as u64) << 8)
                | (b[5] as u64),
        )
    }

    /// Reads a MAC from the first six bytes of `s`. Panics if `s` is shorter;
    /// callers pass header fields of checked frames.
    #[inline]
    pub fn from_slice(s: &[u8]) -> Self {
        Self::from_bytes([s[0], s[1], s[2], s[3], s[4], s[5]])
    }

    pub const fn to_bytes(self) -> [u8; 6] {
        let v = self.0;
        [
            (v >> 40) as u8,
            (v >> 32) as u8,
            (v >> 24) as u8,
            (v >> 16) as u8,
            (v >> 8) as u8,
            v as u8,
        ]
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Inverse of [`MacAddr::as_u64`] (the top 16 bits are ignored).
    pub const fn from_u64(v: u64) -> Self {
        MacAddr(v & 0xffff_ffff_ffff)
    }

    /// Group bit set: multicast or broadcast.
    #[inline]
    pub const fn is_multicast(self) -> bool {
        (self.0 >> 40) & 1 == 1
    }

    #[inline]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// A MAC a switch may learn or pin: unicast and not all-zero.
    #[inline]
    pub const fn is_valid_source(self) -> bool {
        !self.is_multicast() && !self.is_zero()
    }

    /// A stable, locally administered unicast MAC derived from `seed`
    /// (FNV-1a, fixed across builds and Rust versions): the same namespace
    /// and interface name give the same MAC after a restart.
    pub fn stable_local(seed: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in seed.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut bytes = MacAddr(h & 0xffff_ffff_ffff).to_bytes();
        bytes[0] = (bytes[0] & 0xfc) | 0x02; // unicast, locally administered
        MacAddr::from_bytes(bytes)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.to_bytes();
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(sep) {
            if n == 6 || part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| err())?;
            n += 1;
        }
        if n != 6 {
            return Err(err());
        }
        Ok(MacAddr::from_bytes(out))
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_flags() {
        let m: MacAddr = "02:00:5e:10:00:01".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:5e:10:00:01");
        assert_eq!(m.to_bytes(), [2, 0, 0x5e, 0x10, 0, 1]);
        assert!(!m.is_multicast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(
            "01:00:5e:00:00:01"
                .parse::<MacAddr>()
                .unwrap()
                .is_multicast()
        );
        assert!(!MacAddr::ZERO.is_valid_source());
        assert_eq!(
            "AA-bb-cc-dd-ee-ff".parse::<MacAddr>().unwrap().to_string(),
            "aa:bb:cc:dd:ee:ff"
        );
        for bad in [
            "",
            "1:2:3:4:5",
            "01:02:03:04:05:06:07",
            "zz:00:00:00:00:00",
            "001:0:0:0:0:0",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn stable_local_is_stable_unicast_local() {
        let a = MacAddr::stable_local("ns01/eth0");
        assert_eq!(a, MacAddr::stable_local("ns01/eth0"));
        assert_ne!(a, MacAddr::stable_local("ns02/eth0"));
        let b = a.to_bytes();
        assert_eq!(b[0] & 0x03, 0x02);
        // Pinned so a change of the derivation (which would break neighbours'
        // ARP caches across an upgrade) is noticed.
        assert_eq!(a.to_string(), "06:7e:49:0f:e8:e3");
    }

    /// Single-digit groups are accepted (as `ip link` prints none but
    /// users type them); a group of three digits is not, even when its
    /// value fits a byte.
    #[test]
    fn group_widths() {
        assert_eq!(
            "2:0:0:0:0:1".parse::<MacAddr>().unwrap(),
            MacAddr::from_u64(0x0200_0000_0001)
        );
        assert!("002:00:00:00:00:01".parse::<MacAddr>().is_err());
        assert!("02:00:00:00:00:001".parse::<MacAddr>().is_err());
    }

    /// Debug prints like Display (it shows in test failures and logs); serde
    /// goes through the text form both ways (the control socket's JSON).
    #[test]
    fn debug_and_serde_use_the_text_form() {
        let m = MacAddr::from_bytes([0x02, 0xab, 0, 0x10, 0xff, 1]);
        assert_eq!(format!("{m:?}"), "02:ab:00:10:ff:01");
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(j, "\"02:ab:00:10:ff:01\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&j).unwrap(), m);
        assert!(serde_json::from_str::<MacAddr>("\"nonsense\"").is_err());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Bytes, u64 and text forms agree for every address.
            #[test]
            fn forms_roundtrip(b in any::<[u8; 6]>()) {
                let m = MacAddr::from_bytes(b);
                prop_assert_eq!(m.to_bytes(), b);
                prop_assert_eq!(MacAddr::from_slice(&b), m);
                prop_assert_eq!(MacAddr::from_u64(m.as_u64()), m);
                prop_assert_eq!(m.as_u64(), u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]));
                prop_assert_eq!(m.to_string().parse::<MacAddr>().unwrap(), m);
                prop_assert_eq!(m.is_multicast(), b[0] & 1 == 1);
                prop_assert_eq!(m.is_zero(), b == [0; 6]);
                prop_assert_eq!(m.is_valid_source(), b[0] & 1 == 0 && b != [0; 6]);
            }

            /// Any text: parsing never panics, and what parses prints back
            /// as the same address.
            #[test]
            fn any_text_parses_or_errs(s in "[0-9a-fA-F:-]{0,20}") {
                if let Ok(m) = s.parse::<MacAddr>() {
                    prop_assert_eq!(m.to_string().parse::<MacAddr>().unwrap(), m);
                }
            }

            #[test]
            fn stable_local_is_always_unicast_and_local(seed in ".{0,40}") {
                let b = MacAddr::stable_local(&seed).to_bytes();
                prop_assert_eq!(b[0] & 0x03, 0x02);
            }
        }
    }
}
