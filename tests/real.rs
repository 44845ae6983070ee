//! Real third-party footage from ../shared/media/real: every clip harvests and keeps the output
//! contract; rotated, mirrored and non-square-pixel video is analysed as a viewer sees it (boxes
//! and embeddings agree with an upright, square-pixel re-encode of the same pictures);
//! `--skip-nonref` numbers frames exactly on variable-frame-rate input; and a thread limit is
//! one clear error, never a hang or a panic.

mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use util::*;

fn real(name: &str) -> PathBuf {
    media(&format!("real/{name}"))
}

/// x264 lossless at the source's frame timing: a re-encode that changes no pixel beyond what its
/// filter does, so only the geometry differs between the clips compared.
const LOSSLESS: [&str; 8] = ["-an", "-c:v", "libx264", "-qp", "0", "-preset", "veryfast", "-fps_mode"];

fn reencode(input: &Path, filter: Option<&str>, out: &Path) {
    let mut args = vec!["-i", input.to_str().unwrap()];
    if let Some(f) = filter {
        args.extend(["-vf", f]);
    }
    args.extend(LOSSLESS);
    args.extend(["passthrough", out.to_str().unwrap()]);
    ffmpeg(&args);
}

// ---------------------------------------------------------------- every clip, output contract

fn harvest_and_check(name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = harvest(&real(name), &out, &["--stride", "4"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{name}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let manifest = check_contract(&out);
    assert!(manifest["counts"]["frames_decoded"].as_u64().unwrap() > 0, "{name}");
}

macro_rules! every_clip {
    ($($test:ident: $file:literal,)*) => {$(
        #[test]
        fn $test() {
            harvest_and_check($file);
        }
    )*};
}

every_clip! {
    clip_crowd_people: "crowd_people.mp4",
    clip_arcade_1080p: "arcade_1080p.mp4",
    clip_chaplin_bw: "chaplin_bw.mp4",
    clip_audrey_trailer: "audrey_trailer.mp4",
    clip_film_vfr: "film_vfr.mp4",
    clip_film_rotated: "film_rotated.mp4",
    clip_tv_sar_704x576: "tv_sar_704x576.mp4",
    clip_podcast_smoke_gif: "podcast_smoke.gif",
    clip_carphone_qcif: "carphone_qcif.mp4",
    clip_bikes_few_faces: "bikes_few_faces.mp4",
}

#[test]
fn the_clip_list_above_is_every_clip_in_shared_media_real() {
    let mut on_disk: Vec<String> = std::fs::read_dir(real("README.md").parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".mp4") || n.ends_with(".gif"))
        .collect();
    on_disk.sort();
    let tested = include_str!("real.rs");
    for clip in on_disk {
        assert!(tested.contains(&format!(": \"{clip}\",")), "{clip} is in ../shared/media/real but not harvested by a test here");
    }
}

// ---------------------------------------------------------------- geometry

/// How two harvests of the same pictures agree, face by face in the frames both sampled.
#[derive(Debug)]
struct Agreement {
    faces: (usize, usize),
    /// Faces of the first run with a box of IoU ≥ 0.5 in the same frame of the second.
    matched: usize,
    /// Of those, boxes with IoU ≥ 0.9.
    boxes_agree: usize,
    /// Matched pairs both runs embedded, and those at cosine ≥ 0.95.
    embedded: usize,
    embeddings_agree: usize,
    median_iou: f64,
    median_cosine: f64,
}

fn iou(a: &[f64], b: &[f64]) -> f64 {
    let (x1, y1, x2, y2) = (a[0].max(b[0]), a[1].max(b[1]), a[2].min(b[2]), a[3].min(b[3]));
    let inter = (x2 - x1).max(0.0) * (y2 - y1).max(0.0);
    inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn agreement(a: &Run, b: &Run) -> Agreement {
    let bbox = |f: &serde_json::Value| -> Vec<f64> { f["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };
    let mut by_frame: BTreeMap<u64, Vec<&serde_json::Value>> = BTreeMap::new();
    for f in &b.faces {
        by_frame.entry(f["frame_idx"].as_u64().unwrap()).or_default().push(f);
    }
    let (mut ious, mut cosines) = (Vec::new(), Vec::new());
    for f in &a.faces {
        let best =
            by_frame.get(&f["frame_idx"].as_u64().unwrap()).and_then(|c| c.iter().map(|g| (iou(&bbox(f), &bbox(g)), *g)).max_by(|x, y| x.0.total_cmp(&y.0)));
        let Some((v, g)) = best.filter(|(v, _)| *v >= 0.5) else { continue };
        ious.push(v);
        if let (Some(ra), Some(rb)) = (f["embedding_row"].as_u64(), g["embedding_row"].as_u64()) {
            cosines.push(f64::from(cosine(&a.embeddings[ra as usize], &b.embeddings[rb as usize])));
        }
    }
    Agreement {
        faces: (a.faces.len(), b.faces.len()),
        matched: ious.len(),
        boxes_agree: ious.iter().filter(|&&v| v >= 0.9).count(),
        embedded: cosines.len(),
        embeddings_agree: cosines.iter().filter(|&&c| c >= 0.95).count(),
        median_iou: median(ious),
        median_cosine: median(cosines),
    }
}

/// The bar for "the same faces": boxes at IoU ≥ 0.9 and embeddings at cosine ≥ 0.95, for every
/// face when only the orientation differs (the turn is exact), and for `share` of them when
/// pixels had to be resampled, with medians well above both: FFmpeg's `scale` filter and the
/// harvest's one-step stretch round differently, which moves a small face's landmarks a little.
fn assert_same_faces(what: &str, a: &Run, b: &Run, share: f64) {
    let g = agreement(a, b);
    eprintln!("{what}: {g:?}");
    let at_least = |n: usize, of: usize| n as f64 >= share * of as f64;
    assert!(g.faces.0 >= 10 && g.embedded >= 10, "{what}: too few faces to compare: {g:?}");
    assert!(at_least(g.matched, g.faces.0) && at_least(g.matched, g.faces.1), "{what}: faces do not match: {g:?}");
    assert!(at_least(g.boxes_agree, g.matched) && g.median_iou >= 0.95, "{what}: boxes disagree: {g:?}");
    assert!(at_least(g.embeddings_agree, g.embedded) && g.median_cosine >= 0.97, "{what}: embeddings disagree: {g:?}");
}

/// Only the orientation differs: every face must agree.
const EXACT: f64 = 1.0;

fn video(r: &Run) -> &serde_json::Value {
    &r.manifest["input"]["video"]
}

#[test]
fn a_rotated_film_matches_its_upright_re_encode() {
    let tmp = tempfile::tempdir().unwrap();
    let upright = tmp.path().join("upright.mp4");
    // The ffmpeg CLI applies the display matrix when it re-encodes.
    reencode(&real("film_rotated.mp4"), None, &upright);
    let rotated = harvest_ok(&real("film_rotated.mp4"), &tmp.path().join("a"), &["--stride", "2"]);
    let reference = harvest_ok(&upright, &tmp.path().join("b"), &["--stride", "2"]);
    let v = video(&rotated);
    assert_eq!((&v["width"], &v["height"], &v["stored_width"], &v["stored_height"]), (&544.into(), &1280.into(), &1280.into(), &544.into()));
    assert_eq!((&v["rotation"], &v["mirrored"]), (&90.into(), &false.into()));
    assert_eq!((&video(&reference)["width"], &video(&reference)["rotation"]), (&544.into(), &0.into()));
    assert_same_faces("film_rotated.mp4", &rotated, &reference, EXACT);
}

#[test]
fn a_phone_portrait_clip_matches_its_upright_equivalent() {
    // A phone stores a portrait shot as a landscape frame turned a quarter and a matrix that
    // turns it back. The Hamilton clip cropped to portrait is the upright equivalent.
    let tmp = tempfile::tempdir().unwrap();
    let (upright, stored, phone) = (tmp.path().join("upright.mp4"), tmp.path().join("stored.mp4"), tmp.path().join("phone.mp4"));
    let crop = "crop=204:360:218:0";
    reencode(&hamilton(), Some(crop), &upright);
    reencode(&hamilton(), Some(&format!("{crop},transpose=clock")), &stored);
    ffmpeg(&["-i", stored.to_str().unwrap(), "-c", "copy", "-metadata:s:v:0", "rotate=90", phone.to_str().unwrap()]);
    let a = harvest_ok(&phone, &tmp.path().join("a"), &["--stride", "4"]);
    let b = harvest_ok(&upright, &tmp.path().join("b"), &["--stride", "4"]);
    let v = video(&a);
    assert_eq!((&v["width"], &v["height"], &v["stored_width"], &v["stored_height"]), (&204.into(), &360.into(), &360.into(), &204.into()));
    assert_eq!(v["rotation"], 270, "FFmpeg's rotate=90 tag turns the picture counter-clockwise");
    assert_same_faces("phone portrait", &a, &b, EXACT);
}

#[test]
fn non_square_pixels_match_a_square_pixel_re_encode() {
    let tmp = tempfile::tempdir().unwrap();
    let square = tmp.path().join("square.mp4");
    reencode(&real("tv_sar_704x576.mp4"), Some("scale=iw*sar:ih,setsar=1"), &square);
    let a = harvest_ok(&real("tv_sar_704x576.mp4"), &tmp.path().join("a"), &["--stride", "4"]);
    let b = harvest_ok(&square, &tmp.path().join("b"), &["--stride", "4"]);
    let v = video(&a);
    assert_eq!((&v["width"], &v["height"], &v["stored_width"], &v["sample_aspect_ratio"]), (&1024.into(), &576.into(), &704.into(), &"16:11".into()));
    assert_eq!(video(&b)["sample_aspect_ratio"], "1:1");
    assert_same_faces("tv_sar_704x576.mp4", &a, &b, 0.9);
}

/// Writes `matrix` (FFmpeg's layout, 16.16 fixed point) into the first track header of an MP4,
/// as a camera that records mirrored or turned video does.
fn set_display_matrix(mp4: &Path, matrix: [i32; 9], out: &Path) {
    let mut bytes = std::fs::read(mp4).unwrap();
    let at = bytes.windows(4).position(|w| w == b"tkhd").expect("an MP4 track header");
    // Box type, version and flags, then times, track id and duration (wider in version 1),
    // then reserved, layer, group, volume and reserved, then the matrix.
    let start = at + if bytes[at + 4] == 0 { 44 } else { 56 };
    for (i, v) in matrix.iter().enumerate() {
        bytes[start + 4 * i..start + 4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    std::fs::write(out, bytes).unwrap();
}

#[test]
fn every_display_orientation_matches_the_same_turn_made_by_ffmpeg() {
    const ONE: i32 = 1 << 16;
    const W: i32 = 1 << 30;
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base.mp4");
    reencode(&hamilton(), None, &base);
    let plain = harvest_ok(&base, &tmp.path().join("plain"), &["--stride", "4"]);
    // (name, matrix, the ffmpeg filter that shows the same picture, rotation, mirrored)
    let cases = [
        ("mirrored", [-ONE, 0, 0, 0, ONE, 0, 0, 0, W], "hflip", 0, true),
        ("upside down", [-ONE, 0, 0, 0, -ONE, 0, 0, 0, W], "hflip,vflip", 180, false),
        ("flipped", [ONE, 0, 0, 0, -ONE, 0, 0, 0, W], "vflip", 180, true),
        ("transposed", [0, ONE, 0, ONE, 0, 0, 0, 0, W], "transpose=cclock_flip", 270, true),
    ];
    for (name, matrix, filter, rotation, mirrored) in cases {
        let (turned, reference) = (tmp.path().join(format!("{name}.mp4")), tmp.path().join(format!("{name}-ref.mp4")));
        set_display_matrix(&base, matrix, &turned);
        reencode(&base, Some(filter), &reference);
        let a = harvest_ok(&turned, &tmp.path().join(format!("{name}-a")), &["--stride", "4"]);
        let b = harvest_ok(&reference, &tmp.path().join(format!("{name}-b")), &["--stride", "4"]);
        assert_eq!((&video(&a)["rotation"], &video(&a)["mirrored"]), (&rotation.into(), &mirrored.into()), "{name}");
        assert_eq!((&video(&a)["width"], &video(&a)["height"]), (&video(&b)["width"], &video(&b)["height"]), "{name}");
        assert_same_faces(name, &a, &b, EXACT);
    }
    // And the upright clip is not what a turned one gives: the comparison can fail.
    let transposed = Run::load(&tmp.path().join("transposed-a"));
    assert!(agreement(&transposed, &plain).matched * 2 < transposed.faces.len(), "a transposed clip's boxes match the upright clip's");
}

// ---------------------------------------------------------------- --skip-nonref on VFR

#[test]
fn skip_nonref_on_variable_frame_rate_numbers_frames_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let every = harvest_ok(&real("film_vfr.mp4"), &tmp.path().join("every"), &["--stride", "1"]);
    let skip = harvest_ok(&real("film_vfr.mp4"), &tmp.path().join("skip"), &["--stride", "4", "--skip-nonref"]);
    // Frame numbers by full decode, by presentation time.
    let truth: BTreeMap<String, u64> = every.faces.iter().map(|f| (f["t"].to_string(), f["frame_idx"].as_u64().unwrap())).collect();
    let mut checked = 0;
    for f in &skip.faces {
        let idx = f["frame_idx"].as_u64().unwrap();
        if let Some(&want) = truth.get(&f["t"].to_string()) {
            assert_eq!(idx, want, "frame at t={} numbered {idx}, full decode numbers it {want}", f["t"]);
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} faces to check");
    assert!(skip.manifest["counts"]["frames_decoded"].as_u64().unwrap() < every.manifest["counts"]["frames_decoded"].as_u64().unwrap());
    check_contract(&tmp.path().join("skip"));
}

// ---------------------------------------------------------------- thread limits

/// A pids cgroup (v1 here, v2 where that is what the machine has) that the test may fill with
/// one harvest at a time; removed on drop.
struct PidsCgroup(PathBuf);

impl PidsCgroup {
    fn new() -> Self {
        let name = format!("episode-run-test-{}", std::process::id());
        for root in ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"] {
            let dir = Path::new(root).join(&name);
            if std::fs::create_dir(&dir).is_ok() {
                if dir.join("pids.max").exists() {
                    return Self(dir);
                }
                let _ = std::fs::remove_dir(&dir);
            }
        }
        panic!("cannot make a pids cgroup under /sys/fs/cgroup (this test runs as root, as CI does)");
    }

    fn limit(&self, n: u32) {
        std::fs::write(self.0.join("pids.max"), n.to_string()).unwrap();
    }

    /// A command that joins this cgroup, then runs `bin` with `args`.
    fn command(&self, bin: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#).arg(&self.0).arg(bin).args(args);
        cmd
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_thread_limit_is_one_clear_error_never_a_hang_or_a_panic() {
    let cgroup = PidsCgroup::new();
    let tmp = tempfile::tempdir().unwrap();
    let input = hamilton();
    let mut outcomes = BTreeMap::new();
    // From a limit that stops the first thread to one the whole run fits in.
    for n in 1..=26 {
        cgroup.limit(n);
        let out = tmp.path().join(format!("run-{n}"));
        let args = ["harvest", input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "8", "--stride", "8", "--quiet"];
        let mut child = cgroup.command(bin(), &args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let status = wait_or_kill(&mut child, Duration::from_secs(60)).unwrap_or_else(|| panic!("pids.max {n}: still running after 60 s (a hang)"));
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        match status.code() {
            Some(0) => {
                check_contract(&out);
            }
            Some(2) => {
                assert_eq!(stderr.lines().count(), 1, "pids.max {n}: {stderr}");
                assert!(stderr.starts_with("error: ") && stderr.contains("thread limit") && stderr.contains("--threads"), "pids.max {n}: {stderr}");
            }
            code => panic!("pids.max {n}: exit {code:?}: {stderr}"),
        }
        outcomes.insert(n, status.code());
    }
    eprintln!("{outcomes:?}");
    assert_eq!(outcomes[&1], Some(2));
    assert_eq!(outcomes[&26], Some(0), "26 threads are enough for --threads 8");
}
