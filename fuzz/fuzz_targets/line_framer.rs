//! Arbitrary bytes, cut into arbitrary reads, through `split_lines` with an arbitrary max:
//! never a panic, and the lines are those of the whole stream however it is cut.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use switchboard::framing::{TooLong, split_lines};

/// The stream read whole by the obvious method: complete lines without `\n` and one `\r`,
/// stopping at the first one longer than `max`; then the unfinished tail.
fn model(stream: &[u8], max: usize) -> (Vec<Vec<u8>>, Result<Vec<u8>, TooLong>) {
    let strip_cr = |l: &[u8]| l.strip_suffix(b"\r").unwrap_or(l).len();
    let mut pieces: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let tail = pieces.pop().unwrap_or_default();
    let mut lines = Vec::new();
    for p in pieces {
        if strip_cr(p) > max {
            return (lines, Err(TooLong));
        }
        lines.push(p.strip_suffix(b"\r").unwrap_or(p).to_vec());
    }
    if strip_cr(tail) > max {
        return (lines, Err(TooLong));
    }
    (lines, Ok(tail.to_vec()))
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    // Mostly small limits, where lines hit them; sometimes any usize.
    let max: usize = if u.arbitrary()? {
        u.arbitrary()?
    } else {
        u.int_in_range(0..=40)?
    };
    let mut chunks: Vec<&[u8]> = Vec::new();
    while !u.is_empty() {
        let len = u.arbitrary_len::<u8>()?;
        chunks.push(u.bytes(len)?);
    }

    let mut partial = Vec::new();
    let mut lines = Vec::new();
    let mut result = Ok(());
    for c in &chunks {
        result = split_lines(&mut partial, c, max, |l| lines.push(l.to_vec()));
        if result.is_err() {
            break;
        }
        assert!(
            partial.len() <= max.saturating_add(1),
            "partial of {} bytes with max {max}",
            partial.len()
        );
        assert!(!partial.contains(&b'\n'), "partial holds a whole line");
        assert!(
            !partial.is_empty() || partial.capacity() == 0,
            "a buffer is kept with no line pending"
        );
    }
    for l in &lines {
        assert!(
            l.len() <= max,
            "a line of {} bytes passed max {max}",
            l.len()
        );
        assert!(!l.contains(&b'\n'));
    }

    let stream = chunks.concat();
    let (model_lines, model_result) = model(&stream, max);
    assert_eq!(lines, model_lines, "lines differ from the whole stream's");
    match (result, model_result) {
        (Ok(()), Ok(tail)) => assert_eq!(partial, tail, "pending tail differs"),
        (Err(TooLong), Err(TooLong)) => {}
        (got, want) => panic!("result {got:?}, whole stream gives {:?}", want.map(|_| ())),
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
