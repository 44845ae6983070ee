//! Micro-benchmarks of the pure per-frame work around the models: YuNet output decoding + NMS,
//! aligning one face, preparing detector and embedder inputs, writing embeddings, scoring
//! faces against a cast gallery, the shot-cut detector every decoded frame goes through, and
//! grouping an episode's tracks into people. `cargo bench` runs them; the model time itself is
//! measured by `scripts/bench` against real runs.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use episode_run::align::{align_face, square_crop, ARCFACE_TEMPLATE, CROP};
use episode_run::detect::letterbox::{fill_input, Letterbox, Normalize};
use episode_run::detect::nms::nms;
use episode_run::detect::yunet::{decode_level, Level};
use episode_run::embed::sface::crops_to_tensor;
use episode_run::identify::{Gallery, MatchParams};
use episode_run::output::RunWriter;
use episode_run::people::cluster::{cluster, Item};
use episode_run::people::{Linkage, PeopleParams};
use episode_run::track::cuts::{CutDetector, CutParams};
use episode_run::types::RgbImage;

/// Deterministic pseudo-random numbers in 0..1 (xorshift), so runs compare like for like.
fn noise(n: usize, mut x: u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn frame(w: usize, h: usize) -> RgbImage {
    RgbImage::new(w, h, noise(w * h * 3, 7).into_iter().map(|v| (v * 255.0) as u8).collect()).unwrap()
}

fn yunet_decode_nms(c: &mut Criterion) {
    // A 640×640 input: 6400 + 1600 + 400 cells; scores mostly low, ~1% of cells fire.
    let lb = Letterbox { scale: 1.0, width: 640, height: 640 };
    // (stride, cls, obj, bbox, kps) per level.
    type Raw = (usize, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);
    let levels: Vec<Raw> = [8usize, 16, 32]
        .iter()
        .map(|&s| {
            let n = (640 / s) * (640 / s);
            let cls: Vec<f32> = noise(n, s as u64).iter().map(|v| if *v > 0.99 { 0.95 } else { v * 0.2 }).collect();
            (s, cls, vec![0.9; n], noise(4 * n, 3).iter().map(|v| v - 0.5).collect(), noise(10 * n, 5))
        })
        .collect();
    c.bench_function("yunet_decode_nms_640", |b| {
        b.iter(|| {
            let mut dets = Vec::new();
            for (s, cls, obj, bbox, kps) in &levels {
                let level = Level { stride: *s, cls, obj, bbox, kps };
                decode_level(&level, &lb, 0.5, &mut dets);
            }
            black_box(nms(dets, 0.3))
        })
    });
}

fn align_one_face(c: &mut Criterion) {
    let image = frame(1280, 720);
    let lm = ARCFACE_TEMPLATE.map(|p| [p[0] * 1.5 + 600.0, p[1] * 1.5 + 300.0]);
    c.bench_function("align_face_720p", |b| b.iter(|| black_box(align_face(&image, black_box(&lm)).unwrap())));
    // A face's context square (twice a 168-pixel box): the window each face keeps, and the view
    // made from it for the faces that become their track's best.
    c.bench_function("context_window_720p", |b| b.iter(|| black_box(square_crop(&image, black_box([684.0, 384.0]), 336.0, CROP))));
    c.bench_function("context_crop_720p", |b| b.iter(|| black_box(square_crop(&image, black_box([684.0, 384.0]), 336.0, CROP).image())));
}

fn preprocess(c: &mut Criterion) {
    let image = frame(1280, 720);
    let lb = Letterbox::plan(1280, 720, Some((640, 640)), 640);
    let norm = Normalize { bgr: true, mean: 0.0, scale: 1.0 };
    let mut buf = vec![0f32; 3 * 640 * 640];
    c.bench_function("detector_input_720p_to_640", |b| b.iter(|| fill_input(&image, &lb, &norm, black_box(&mut buf))));
    let crop = frame(112, 112);
    let crops: Vec<&RgbImage> = vec![&crop; 8];
    c.bench_function("embedder_input_batch8", |b| b.iter(|| black_box(crops_to_tensor(black_box(&crops)))));
}

fn npy_writing(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Vec<f32>> = (0..1000).map(|i| noise(128, i + 1)).collect();
    c.bench_function("npy_write_1000x128", |b| {
        b.iter(|| {
            let mut w = RunWriter::create(dir.path(), 128).unwrap();
            for r in &rows {
                w.push_embedding(r).unwrap();
            }
            w.finish().unwrap()
        })
    });
}

fn faces_by_seeds(c: &mut Criterion) {
    let unit = |mut v: Vec<f32>| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    };
    let people = (0..40).map(|i| (format!("p{i}"), vec![unit(noise(128, 100 + i))])).collect();
    let gallery = Gallery::new(people);
    let faces = ndarray::Array2::from_shape_vec((1000, 128), noise(128_000, 9)).unwrap();
    let params = MatchParams { threshold: 0.363, min_margin: 0.1 };
    c.bench_function("match_1000_faces_x_40_seeds", |b| b.iter(|| black_box(gallery.match_rows(faces.view(), &params))));
}

fn cut_detection(c: &mut Criterion) {
    // The detector sees the 64×64 thumbnail of every decoded frame, whatever the resolution;
    // eight different thumbnails in turn, so every push scores a real change.
    let thumbs: Vec<RgbImage> =
        (0..8).map(|i| RgbImage::new(64, 64, noise(64 * 64 * 3, 11 + i).into_iter().map(|v| (v * 255.0) as u8).collect()).unwrap()).collect();
    let mut det = CutDetector::new(CutParams { ratio: 2.8, min_score: 0.08, min_shot: 8 });
    let mut idx = 0u64;
    c.bench_function("cut_detector_push_per_frame", |b| {
        b.iter(|| {
            let settled = det.push(idx, black_box(&thumbs[(idx % 8) as usize]));
            idx += 1;
            black_box(settled)
        })
    });
}

fn people_clustering(c: &mut Criterion) {
    // Synthetic episodes: one person per 20 tracks, each track its person's direction plus noise
    // (same-person cosines ~0.6, others ~0), in shots of 3 tracks seen at the same time.
    let mut group = c.benchmark_group("people_cluster_tracks");
    group.sample_size(10);
    for n in [1_000usize, 5_000, 10_000] {
        let people = n / 20;
        let centres: Vec<Vec<f32>> = (0..people).map(|p| noise(128, 1000 + p as u64).into_iter().map(|v| v - 0.5).collect()).collect();
        let embs: Vec<Vec<f32>> = (0..n)
            .map(|t| {
                let jitter = noise(128, 50_000 + t as u64);
                let mut v: Vec<f32> = centres[(t * 7) % people].iter().zip(jitter).map(|(c, j)| c + 0.45 * (j - 0.5)).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                v
            })
            .collect();
        let items: Vec<Item> = embs.iter().map(|e| Item { embedding: Some(e), n_usable: 10, name: None }).collect();
        let cannot: Vec<(usize, usize)> = (0..n / 3).flat_map(|s| [(3 * s, 3 * s + 1), (3 * s, 3 * s + 2), (3 * s + 1, 3 * s + 2)]).collect();
        let params = PeopleParams { linkage: Linkage::Average, threshold: 0.4, min_track_faces: 3, attach_threshold: 0.5, join_named: true };
        group.bench_function(format!("{n}"), |b| b.iter(|| black_box(cluster(black_box(&items), &cannot, &params))));
    }
    group.finish();
}

criterion_group!(benches, yunet_decode_nms, align_one_face, preprocess, npy_writing, faces_by_seeds, cut_detection, people_clustering);
criterion_main!(benches);
