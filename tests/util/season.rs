//! A season's test episodes and the steps of a season against `s3s-fs`, shared by the season
//! tests (`#[path]`-included beside `util` and `s3server`). Four short episodes are built with
//! ffmpeg from ../shared/media (Hamilton; a slideshow of Obama and Big Bang Theory faces; the
//! Big Bang Theory group photos and other crops of the same people; the Walking Dead photos), so
//! that Obama and four cast members appear in two episodes. Each slideshow's ground truth is its
//! order of photos: who is on screen from when to when.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use episode_run::s3::S3Url;

use crate::s3server::{env_pairs, Server, BUCKET, SECRET};
use crate::util::{self, bin, files_under, json_lines, media};

/// Seconds each photo of a slideshow stays on screen, at 10 frames a second.
pub const SLIDE_S: f64 = 1.5;
/// Local checkpoints every second (the plan records it), so a task reaches S3 early.
pub const CHECKPOINT_TOML: &str = "[progress]\ncheckpoint_s = 1.0\n";

/// An episode: its file name in the bucket, the file, and who is on screen in which slides.
pub struct Episode {
    pub name: &'static str,
    pub file: PathBuf,
    /// (slide index, person) for the slides that show one known person alone.
    pub cast: Vec<(usize, &'static str)>,
}

/// A slideshow of `photos`, each letterboxed into 640×360 for [`SLIDE_S`] seconds.
pub fn slideshow(out: &Path, photos: &[PathBuf]) {
    let mut args: Vec<String> = vec!["-v".into(), "error".into(), "-y".into()];
    let mut filter = String::new();
    for (i, photo) in photos.iter().enumerate() {
        args.extend(["-loop", "1", "-framerate", "10", "-t", &SLIDE_S.to_string(), "-i"].map(String::from));
        args.push(photo.to_string_lossy().into_owned());
        filter.push_str(&format!("[{i}:v]scale=640:360:force_original_aspect_ratio=decrease,pad=640:360:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[v{i}];"));
    }
    let inputs: String = (0..photos.len()).map(|i| format!("[v{i}]")).collect();
    filter.push_str(&format!("{inputs}concat=n={}:v=1:a=0[o]", photos.len()));
    args.extend(["-filter_complex", &filter, "-map", "[o]", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-r", "10"].map(String::from));
    args.push(out.to_string_lossy().into_owned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    util::ffmpeg(&refs);
}

pub fn real(rel: &str) -> PathBuf {
    media(&format!("real/{rel}"))
}

pub fn crop(person: &str, n: u32) -> PathBuf {
    real(&format!("bbt/{person}/{person}{n}.png"))
}

/// The four episodes, built into `dir`.
pub fn episodes(dir: &Path) -> Vec<Episode> {
    let bbt = ["sheldon", "leonard", "penny", "howard"];
    let one = dir.join("ep1_obama_bbt.mp4");
    let mut photos = vec![media("obama.jpg"), media("obama2.jpg")];
    photos.extend(bbt.iter().map(|p| crop(p, 1)));
    slideshow(&one, &photos);
    let two = dir.join("ep2_bbt_group.mp4");
    let mut photos: Vec<PathBuf> = (1..=5).map(|n| real(&format!("bbt/bbt{n}.jpg"))).collect();
    photos.extend(bbt.iter().map(|p| crop(p, 2)));
    slideshow(&two, &photos);
    let three = dir.join("ep3_twd.mp4");
    let photos: Vec<PathBuf> = ["daryl", "rick", "negan"].iter().flat_map(|p| (1..=4).map(move |n| real(&format!("twd/{p}{n}.jpg")))).collect();
    slideshow(&three, &photos);
    let mut cast_one = vec![(0, "obama"), (1, "obama")];
    cast_one.extend(bbt.iter().enumerate().map(|(i, p)| (i + 2, *p)));
    vec![
        Episode { name: "ep0_hamilton.mp4", file: util::hamilton(), cast: vec![] },
        Episode { name: "ep1_obama_bbt.mp4", file: one, cast: cast_one },
        Episode { name: "ep2_bbt_group.mp4", file: two, cast: bbt.iter().enumerate().map(|(i, p)| (i + 5, *p)).collect() },
        Episode { name: "ep3_twd.mp4", file: three, cast: vec![] },
    ]
}

pub fn id(e: &Episode) -> &str {
    e.name.trim_end_matches(".mp4")
}

/// The binary with the test credentials, one engine index variable, and nothing of the
/// machine's own AWS set-up.
pub fn command(args: &[String], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args).env_remove("AWS_PROFILE").env_remove("AWS_ENDPOINT_URL");
    for k in ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "SLURM_ARRAY_TASK_ID"] {
        cmd.env_remove(k);
    }
    for (k, v) in env_pairs(SECRET) {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn run(args: &[String], env: &[(&str, String)]) -> Output {
    let out = command(args, env).output().expect("run episode-run");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(SECRET), "the secret was printed");
    out
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn words(parts: &[&str], more: &[String]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).chain(more.iter().cloned()).collect()
}

/// What a run publishes that must not depend on how it was run: every output but the ones
/// that carry times (timings, manifest, progress, report).
pub fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let stable = ["faces.jsonl", "embeddings.npy", "shots.jsonl", "tracks.jsonl", "track_embeddings.npy", "people.jsonl", "people_embeddings.npy"];
    files_under(dir)
        .into_iter()
        .filter(|(rel, _)| stable.contains(&rel.as_str()) || rel.starts_with("crops/"))
        .map(|(rel, p)| (rel, std::fs::read(p).unwrap()))
        .collect()
}

pub struct Season {
    pub server: Server,
    pub tmp: tempfile::TempDir,
    /// The plan's URL.
    pub plan: String,
    /// The season's prefix in the bucket (`s1`).
    pub out: &'static str,
    /// Where the episodes are in the bucket (`media`).
    pub media: &'static str,
}

impl Season {
    pub fn new(media: &'static str, out: &'static str) -> Self {
        let server = Server::start();
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("checkpoint.toml"), CHECKPOINT_TOML).unwrap();
        Season { plan: format!("s3://{BUCKET}/{out}/season.json"), server, tmp, out, media }
    }

    /// Where s3s-fs keeps the object `key` of the test bucket.
    pub fn object(&self, key: &str) -> PathBuf {
        self.server.root.path().join(BUCKET).join(key)
    }

    pub fn episode_dir(&self, id: &str) -> PathBuf {
        self.object(&format!("{}/{id}", self.out))
    }

    pub fn put(&self, file: &Path, key: &str) {
        self.server.store().put_file(file, &S3Url::parse(&format!("s3://{BUCKET}/{key}")).unwrap()).unwrap();
    }

    pub fn plan(&self) -> Output {
        let ck = self.tmp.path().join("checkpoint.toml");
        let args = words(
            &[
                "season",
                "plan",
                &format!("s3://{BUCKET}/{}/", self.media),
                "--out",
                &format!("s3://{BUCKET}/{}/", self.out),
                "--stride",
                "2",
                "--threads",
                "1",
                "--remote-checkpoint-s",
                "1",
            ],
            &[
                vec![
                    "--config".into(),
                    ck.to_string_lossy().into_owned(),
                    "--plan-file".into(),
                    self.tmp.path().join("season.json").to_string_lossy().into_owned(),
                ],
                self.server.flags(),
            ]
            .concat(),
        );
        run(&args, &[])
    }

    /// `season run` with a fresh cache (a new machine), the index from `var`.
    pub fn task_args(&self, cache: &str, extra: &[&str]) -> Vec<String> {
        let cache = self.tmp.path().join(cache);
        words(
            &["season", "run", "--plan", &self.plan, "--cache-dir", &cache.to_string_lossy()],
            &[extra.iter().map(|s| s.to_string()).collect(), self.server.flags()].concat(),
        )
    }

    pub fn task(&self, index: usize, var: &'static str, cache: &str) -> Output {
        run(&self.task_args(cache, &[]), &[(var, index.to_string())])
    }

    pub fn merge(&self) -> Output {
        let work = self.tmp.path().join("merge");
        run(&words(&["season", "merge", "--plan", &self.plan, "--work-dir", &work.to_string_lossy()], &self.server.flags()), &[])
    }

    /// Every episode's outputs are byte for byte those of a local harvest of the same file with
    /// the same flags, and its marker records each object's size.
    pub fn assert_like_local(&self, eps: &[Episode]) {
        let s = self;
        let ck = s.tmp.path().join("checkpoint.toml");
        for e in eps {
            let local = s.tmp.path().join("local").join(id(e));
            let o = util::harvest(&e.file, &local, &["--stride", "2", "--threads", "1", "--config", &ck.to_string_lossy()]);
            assert!(o.status.success(), "{}", stderr(&o));
            let (there, here) = (outputs(&s.episode_dir(id(e))), outputs(&local));
            assert!(here.len() > 7, "{}: the local run has crops", id(e));
            assert_eq!(there.keys().collect::<Vec<_>>(), here.keys().collect::<Vec<_>>(), "{}: the same files", id(e));
            for (rel, bytes) in &here {
                assert!(there[rel] == *bytes, "{}: {rel} differs from a local harvest", id(e));
            }
            let done: serde_json::Value = serde_json::from_slice(&std::fs::read(s.episode_dir(id(e)).join("_DONE.json")).unwrap()).unwrap();
            for (rel, fact) in done["objects"].as_object().unwrap() {
                let bytes = std::fs::read(s.episode_dir(id(e)).join(rel)).unwrap();
                assert_eq!(bytes.len() as u64, fact["size"].as_u64().unwrap(), "{rel}: the marker's size");
            }
        }
    }

    /// The merged cast: two people of one episode never joined, Obama and the four Big Bang
    /// Theory cast members joined across episodes (by the slideshows' ground truth), a report
    /// row per season person, and a merge run again writes the same files.
    pub fn assert_cast(&self, eps: &[Episode]) {
        let s = self;
        let season = s.object(&format!("{}/season", s.out));
        let episodes_rows = json_lines(&season.join("episodes.jsonl"));
        assert_eq!(episodes_rows.len(), eps.len());
        let people = json_lines(&season.join("people.jsonl"));
        let appearances = json_lines(&season.join("appearances.jsonl"));
        let (shape, rows) = util::read_rows(&season.join("people_embeddings.npy"));
        assert_eq!((shape[0] as usize, rows.len()), (people.len(), people.len()));
        let mut pairs = std::collections::BTreeSet::new();
        for a in &appearances {
            assert!(pairs.insert((a["person_id"].as_u64().unwrap(), a["index"].as_u64().unwrap())), "two people of one episode joined: {a}");
        }
        // Who each slide's person became: the episode person of the longest track within the
        // slide, and the season person of that episode person.
        let season_of = |index: usize, episode_person: u64| -> u64 {
            let a = appearances.iter().find(|a| a["index"] == index && a["episode_person_id"] == episode_person);
            a.unwrap_or_else(|| panic!("episode {index} person {episode_person} is in no appearance"))["person_id"].as_u64().unwrap()
        };
        let tracks_of = |index: usize| json_lines(&s.episode_dir(id(&eps[index])).join("tracks.jsonl"));
        let season_person = |index: usize, slide: usize| -> u64 {
            let (from, to) = (slide as f64 * SLIDE_S - 0.05, (slide + 1) as f64 * SLIDE_S);
            let tracks = tracks_of(index);
            let t = tracks
                .iter()
                .filter(|t| !t["person_id"].is_null() && t["t_start"].as_f64().unwrap() >= from && t["t_end"].as_f64().unwrap() < to)
                .max_by_key(|t| t["n_faces"].as_u64().unwrap())
                .unwrap_or_else(|| panic!("no person's track within episode {index} slide {slide}"));
            season_of(index, t["person_id"].as_u64().unwrap())
        };
        // Obama: the first two slides of episode 1, and one of the people of Hamilton's frames
        // 211-274 (the others there are not in episode 1).
        let obama = season_person(1, 0);
        assert_eq!(obama, season_person(1, 1), "Obama's two photos are one person");
        let late: std::collections::BTreeSet<u64> = tracks_of(0)
            .iter()
            .filter(|t| t["first_frame"].as_u64().unwrap() >= 211 && !t["person_id"].is_null())
            .map(|t| season_of(0, t["person_id"].as_u64().unwrap()))
            .collect();
        assert!(late.contains(&obama), "Obama of Hamilton and of episode 1 are one season person: {appearances:?}");
        for (slide, name) in &eps[1].cast[2..] {
            let again = eps[2].cast.iter().find(|(_, n)| n == name).unwrap().0;
            assert_eq!(season_person(1, *slide), season_person(2, again), "{name} of episodes 1 and 2 is one season person: {appearances:?}");
        }
        let recurring = people.iter().filter(|p| p["episodes"].as_u64().unwrap() > 1).count();
        assert!(recurring >= 5, "Obama and four cast members recur: {people:?}");
        let report = std::fs::read_to_string(season.join("report.html")).unwrap();
        for e in eps {
            assert!(report.contains(id(e)), "the report has a column for {}", id(e));
        }
        assert_eq!(report.matches("<tr data-person=").count(), people.len());
        assert!(people.iter().all(|p| season.join(p["crop"].as_str().unwrap()).is_file()), "every season person has their best crop");
        assert_eq!(report.matches("src=\"data:image/jpeg;base64,").count(), people.len(), "and it is on the page");
        // Merge again: the same files.
        let before: Vec<(String, Vec<u8>)> =
            files_under(&season).into_iter().filter(|(r, _)| r != "report.html").map(|(r, p)| (r, std::fs::read(p).unwrap())).collect();
        assert!(s.merge().status.success());
        let after: Vec<(String, Vec<u8>)> =
            files_under(&season).into_iter().filter(|(r, _)| r != "report.html").map(|(r, p)| (r, std::fs::read(p).unwrap())).collect();
        assert!(before == after, "a merge run again writes the same files");
    }
}
