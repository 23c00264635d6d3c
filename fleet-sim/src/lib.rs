//! fleet-sim: a device simulator for fleetd.
//!
//! It plays both sides of a device's life outside fleetd:
//! - the [`factory`]: a CA whose key the simulator holds (imported into
//!   fleetd as a `fleet_certificate_authority`), signing one certificate
//!   per device with a fresh key, locally;
//! - the devices ([`sim`]): N virtual devices, one Tokio task each, that
//!   enroll over the real mutual-TLS device API, check in at an interval,
//!   take firmware assignments, "install" them and report success or
//!   failure at a chosen, reproducible rate, writing everything to a
//!   [`ledger`] that tests compare with fleetd's own counts.

pub mod admin;
pub mod bench;
pub mod client;
pub mod factory;
pub mod ledger;
pub mod sim;

pub use client::Endpoint;
pub use factory::Factory;
pub use ledger::{Event, Ledger};
pub use sim::{Report, SimConfig, Simulation, Stats, Summary};
