//! The pure L2 switching core: the MAC table ([`fdb`]) and the forwarding
//! decision ([`forward`]), which follows the overlay's [`directory`] in
//! directory mode. Frames, ports and time go in; decisions come out.
//! Nothing here does I/O or reads a clock.

pub mod directory;
pub mod fdb;
pub mod forward;
pub mod security;

pub use directory::{Directory, DirectoryError};
pub use fdb::{Fdb, FdbStats, Learned, Millis, PortId};
pub use forward::{Decision, DropReason, FloodReason, Verdict, decide, decide_guarded, decide_in};
pub use security::Guard;
