//! End-to-end tests: the real binary, real sockets on 127.0.0.1, port 0.

mod util;

mod bench;
