//! Reading a password: from `TETHER_PASSWORD` (for scripts), else typed on the terminal with
//! echo off. Never from the command line, where `ps` and shell history would see it.

use std::io::{BufRead, Write};
use std::os::fd::AsRawFd;

/// Environment variable a script may give the host password in.
pub const PASSWORD_ENV: &str = "TETHER_PASSWORD";

/// The password for reaching `what`: the environment's, or asked for on the terminal.
pub fn for_host(what: &str) -> Result<String, String> {
    if let Ok(password) = std::env::var(PASSWORD_ENV) {
        return Ok(password);
    }
    read_hidden(&format!("Password for {what}: ")).map_err(|e| {
        format!(
            "this link has no secret, so the host's password is needed, but {e}; set {PASSWORD_ENV} or use an invite"
        )
    })
}

/// Ask on the controlling terminal with echo off; the line without its newline.
pub fn read_hidden(prompt: &str) -> Result<String, String> {
    let tty = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| "there is no terminal to ask on".to_owned())?;
    let fd = tty.as_raw_fd();
    // SAFETY: tcgetattr/tcsetattr on an open terminal fd with termios structs we own.
    let saved = unsafe {
        let mut saved: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut saved) != 0 {
            return Err("the terminal cannot turn echo off".into());
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        libc::tcsetattr(fd, libc::TCSANOW, &quiet);
        saved
    };
    let mut writer = &tty;
    let _ = writer.write_all(prompt.as_bytes()).and_then(|_| writer.flush());
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    // SAFETY: as above; restores what was there.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    read.map_err(|e| format!("reading the password: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
