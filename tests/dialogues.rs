//! Transcripts written by the daemon and read back (`switchboard transcript`), and bot
//! scripts tested with dialogues (`switchboard test-script`), from files and from transcripts.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::bot::support_bot_with;
use crate::util::*;

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scripts")
}

fn script() -> String {
    scripts().join("support-bot.toml").display().to_string()
}

#[test]
fn the_shipped_dialogues_pass_against_the_support_bot_script() {
    let dialogues = scripts().join("support-bot.dialogues.toml");
    let o = run(&["test-script", &script(), dialogues.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.ends_with("turn(s): all passed\n"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(
        out.lines().filter(|l| l.starts_with("ok ")).count() >= 9,
        "{out}"
    );
}

#[test]
fn a_failing_turn_shows_the_expected_and_the_actual_reply_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.toml");
    std::fs::write(
        &file,
        "[[dialogue]]\nname = \"prices\"\n\n[[dialogue.turn]]\nsay = \"价格\"\nreply = \"免费\"\n\n\
         [[dialogue.turn]]\nsay = \"订单 7\"\nmatches = \"订单 7 已发货\"\n\n\
         [[dialogue.turn]]\nsay = \"人工\"\nhandoff = false\n",
    )
    .unwrap();
    let o = run(&["test-script", &script(), file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let at = |line: usize| format!("{}:{line}: ", file.display());
    assert!(out.contains("FAIL  prices"), "{out}");
    assert!(
        out.contains(&format!(
            "{}turn 1, say \"价格\"\n    expected: \"免费\"\n    actual:   \"基础版 99 元/月",
            at(4)
        )),
        "{out}"
    );
    // The delayed rule was not given its pause.
    assert!(
        out.contains(&format!(
            "{}turn 2, say \"订单 7\"\n    expected: a reply matching /订单 7 已发货/\n    actual:   (no reply) (a delayed reply is due 300ms later",
            at(8)
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{}turn 3, say \"人工\"\n    expected: no handoff\n    actual:   a handoff to a person",
            at(12)
        )),
        "{out}"
    );
    assert!(out.ends_with("1 dialogue(s) failed, 3 check(s)\n"), "{out}");
}

#[test]
fn a_dialogue_file_with_a_syntax_error_names_its_line_and_tests_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.toml");
    std::fs::write(
        &file,
        "[[dialogue]]\nname = \"x\"\n[[dialogue.turn]]\nsay = \"unclosed\n",
    )
    .unwrap();
    let o = run(&["test-script", &script(), file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.starts_with(&format!("{}:4:", file.display())), "{err}");
    assert!(stdout(&o).is_empty());
    // A misspelt key, with its line.
    std::fs::write(
        &file,
        "[[dialogue]]\nname = \"x\"\n[[dialogue.turn]]\nsay = \"hi\"\nrepyl = \"x\"\n",
    )
    .unwrap();
    let o = run(&["test-script", &script(), file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.starts_with(&format!("{}:5:", file.display())), "{err}");
    assert!(err.contains("`repyl`"), "{err}");
}

/// The transcript file the daemon in `dir` wrote for `listener` (today's, the only one).
fn transcript_of(dir: &Path, listener: &str) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir.join("transcripts"))
        .expect("the transcripts folder")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{listener}-"))
        })
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

#[test]
fn a_conversation_with_a_handoff_is_transcribed_printed_and_turned_into_passing_dialogues() {
    let mut d = support_bot_with(|t| t);
    d.stdin.take();
    d.wait_event("operator_detached");
    let mut op = Attach::new(&d.dir.path().join("ctl.sock"));
    op.out.wait(&["switchboard console"]);
    let mut c = connect(d.addr("bot-tcp"));
    assert!(ask(&mut c, "价格").contains("基础版 99 元"));
    assert!(ask(&mut c, "订单 31").contains("订单 31 已发货"));
    assert!(ask(&mut c, "人工").contains("正在为您转接"));
    c.write_all("发票怎么开？".as_bytes()).unwrap();
    op.out.wait(&["] 发票怎么开？"]);
    op.say("@1 请把抬头发给我。");
    assert_eq!(ask_reply(&mut c), "请把抬头发给我。");
    op.say("/release 1");
    op.out.wait(&["released by"]);
    assert!(ask(&mut c, "help").contains("订单 <编号>"));
    assert!(ask(&mut c, "bye").contains("再见"));
    // A graceful stop lets the writer finish.
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit().success());

    let file = transcript_of(d.dir.path(), "bot-tcp");
    let text = std::fs::read_to_string(&file).unwrap();
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let summary: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["direction"].as_str().unwrap(),
                r["who"].as_str().unwrap(),
                r["name"].as_str().or(r["event"].as_str()).unwrap_or("-"),
                r["event"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "out bot scripted-reply -", // the greeting
            "in customer - -",          // 价格
            "out bot scripted-reply -",
            "in customer - -", // 订单 31
            "out bot scripted-reply -",
            "in customer - -", // 人工
            "out bot scripted-reply -",
            "event bot scripted-reply handoff",
            "out bot console-reply -", // 您排在第 1 位
            "in customer - -",         // 发票怎么开？
            "event operator op1 (uid 0) taken",
            "out operator op1 (uid 0) -",
            "event operator op1 (uid 0) released",
            "in customer - -", // help
            "out bot scripted-reply -",
            "in customer - -", // bye
            "out bot bye-close -",
        ]
        .map(|s| s.replace("op1 (uid 0)", &format!("op1 (uid {})", uid())))
    );
    assert_eq!(rows[1]["text"], "价格");
    assert_eq!(rows[11]["text"], "请把抬头发给我。");
    let first_time = rows[0]["time"].as_str().unwrap();
    assert!(
        file.to_str()
            .unwrap()
            .ends_with(&format!("transcripts/bot-tcp-{}.jsonl", &first_time[..10])),
        "one file a day: {}",
        file.display()
    );
    assert!(
        rows.iter()
            .all(|r| r["session"] == 1 && r["listener"] == "bot-tcp")
    );

    // Readably.
    let o = run(&["transcript", file.to_str().unwrap(), "--session", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("== session 1 on bot-tcp, from 127.0.0.1:"),
        "{out}"
    );
    for part in [
        "  customer   价格\n",
        "  bot        基础版 99 元/月，专业版 199 元/月，年付八五折。\n",
        "  --         handed to a person (scripted-reply)\n",
        "  --         given back to the bot by op1",
        &format!("  op1 (uid {}) 请把抬头发给我。\n", uid()),
    ] {
        assert!(out.contains(part), "{part:?} in:\n{out}");
    }
    let o = run(&["transcript", file.to_str().unwrap(), "--session", "9"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no session 9"), "{}", stderr(&o));

    // As dialogues, which the script passes.
    let o = run(&["test-script", "--from-transcript", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dialogues = d.dir.path().join("from-transcript.toml");
    std::fs::write(&dialogues, &o.stdout).unwrap();
    let generated = stdout(&o);
    assert!(generated.contains("handoff = true"), "{generated}");
    assert!(generated.contains("release = true"), "{generated}");
    assert!(
        generated.contains("pause = \""),
        "the delayed order answer: {generated}"
    );
    let o = run(&["test-script", &script(), dialogues.to_str().unwrap()]);
    assert!(o.status.success(), "{}\n{generated}", stdout(&o));
    assert!(stdout(&o).ends_with("all passed\n"), "{}", stdout(&o));
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

fn ask_reply(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut buf = [0; 1024];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

const DESK: &str = "[\"bye-close\", \"console-reply\"]";

#[test]
fn an_unwritable_transcript_folder_stops_the_start() {
    let config = tcp_listener("desk", DESK, "transcripts = \"taken\"");
    let mut d = Daemon::spawn(&config, |dir| {
        // A file where the folder should be: no user can write into it, root neither.
        std::fs::write(dir.join("taken"), "a file").unwrap();
    });
    let status = d.wait_exit();
    assert_eq!(status.code(), Some(1));
    let err = d.drain_stderr();
    assert!(
        err.contains("switchboard.toml: listener \"desk\" transcripts: ")
            && err.contains("taken is not a folder"),
        "{err}"
    );
    assert_eq!(d.events("ready").count(), 0, "nothing was served");
}

#[test]
fn a_reload_to_an_unwritable_transcript_folder_is_refused() {
    let mut d = Daemon::start(&tcp_listener("desk", DESK, "transcripts = \"t\""));
    std::fs::write(d.dir.path().join("taken"), "a file").unwrap();
    std::fs::write(
        d.dir.path().join("switchboard.toml"),
        with_json_logs(&tcp_listener("desk", DESK, "transcripts = \"taken/t\"")),
    )
    .unwrap();
    let sock = d.dir.path().join("ctl.sock");
    let o = run(&["reload", "--socket", sock.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.starts_with("reload refused: the config has 1 error(s): ")
            && out.contains(
                "switchboard.toml: listener \"desk\" transcripts: cannot create the folder"
            ),
        "{out}"
    );
    let ev = d.wait_event("reload_refused");
    assert!(field(&ev, "error").contains("transcripts"), "{ev}");
    // The daemon goes on as it was.
    let mut c = connect(d.addr("desk"));
    c.write_all(b"still there?").unwrap();
    d.stdout.wait(&["#1 desk/tcp", "still there?"]);
}
