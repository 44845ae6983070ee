//! Non-maximum suppression: the detector reports every anchor that fires, several per face;
//! NMS keeps the best-scoring box of each overlapping group.

use crate::types::Detection;

/// Intersection over union of two `[x1, y1, x2, y2]` boxes; 0 for empty boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Greedy NMS: sort by score, drop every box overlapping a kept one by more than `threshold`.
/// Ties keep their input order, so the result is deterministic.
pub fn nms(mut dets: Vec<Detection>, threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::with_capacity(dets.len().min(64));
    for d in dets {
        if kept.iter().all(|k| iou(&k.bbox, &d.bbox) <= threshold) {
            kept.push(d);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(bbox: [f32; 4], score: f32) -> Detection {
        Detection { bbox, landmarks: [[0.0; 2]; 5], score }
    }

    #[test]
    fn iou_of_known_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 20.0, 30.0, 30.0]), 0.0);
        // Half-overlapping: intersection 50, union 150.
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[5.0, 5.0, 5.0, 5.0], &[5.0, 5.0, 5.0, 5.0]), 0.0);
    }

    #[test]
    fn nms_keeps_best_of_each_cluster() {
        let out = nms(
            vec![det([0.0, 0.0, 10.0, 10.0], 0.7), det([1.0, 1.0, 11.0, 11.0], 0.9), det([50.0, 50.0, 60.0, 60.0], 0.8), det([0.5, 0.5, 10.5, 10.5], 0.6)],
            0.3,
        );
        let scores: Vec<f32> = out.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.8]);
    }

    #[test]
    fn nms_keeps_boxes_below_threshold_overlap() {
        // IoU 1/3 > 0.3 suppresses; at threshold 0.4 both stay.
        let input = vec![det([0.0, 0.0, 10.0, 10.0], 0.9), det([5.0, 0.0, 15.0, 10.0], 0.8)];
        assert_eq!(nms(input.clone(), 0.3).len(), 1);
        assert_eq!(nms(input, 0.4).len(), 2);
    }
}
