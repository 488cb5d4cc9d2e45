//! End-to-end tests: the real binary, real sockets on 127.0.0.1, port 0.

mod bot;
mod check;
mod cli;
mod clients;
mod console;
mod core;
mod exec;
mod faults;
mod files_as_root;
mod forward;
mod limits;
mod port;
mod record;
mod service;
mod systemd;
mod toxiproxy;
mod users;
mod util;
mod watch;

mod bench;
