//! End-to-end tests: the real binary, real sockets on 127.0.0.1, port 0.

mod bot;
mod browser;
mod check;
mod cli;
mod clients;
mod console;
mod core;
mod desk;
mod dialogues;
mod exec;
mod faults;
mod files_as_root;
mod forward;
mod limits;
mod port;
mod proxy;
mod record;
mod service;
mod systemd;
mod tls;
mod toxiproxy;
mod tutorial;
mod users;
mod util;
mod watch;
mod web;

mod bench;
