//! End-to-end tests: the real binary, real sockets on 127.0.0.1, port 0.

mod bot;
mod check;
mod cli;
mod clients;
mod console;
mod core;
mod files_as_root;
mod limits;
mod port;
mod proxy;
mod service;
mod systemd;
mod tls;
mod users;
mod util;

mod bench;
