//! fleetd: the Fleetform fleet backend.
//!
//! Data flows one way: [`api`] (admin HTTP) → [`domain`] (pure rules) →
//! [`store`] (SQLite today, PostgreSQL later, behind one trait). The
//! remaining modules wire a process around them: [`cli`] parses the
//! command line into a [`config::Config`], [`server`] opens the store,
//! binds the listener and serves until [`shutdown`] says stop.
//!
//! `main.rs` is a thin shell over this library so that tests can run a
//! complete fleetd in-process with [`server::Server`].

pub mod admin_token;
pub mod api;
pub mod atomic_file;
pub mod cli;
pub mod config;
pub mod device;
pub mod engine;
/// The pure fleet rules live in their own crate so the Terraform provider
/// validates at plan time with exactly the rules fleetd enforces.
pub use fleet_domain as domain;
pub mod keystore;
pub mod logging;
pub mod server;
pub mod shutdown;
pub mod store;
