//! Seeded random shapes for the convolutions, GPU against the reference.

mod common;

use common::{check_op, rng};
use mobilenet_wgpu::ops::{Conv2d, Depthwise, OpKind, Padding, Pointwise};
use rand::Rng;

const CASES: u64 = 25;

fn random_nhwc(r: &mut impl Rng, max_channels: usize) -> [usize; 4] {
    [
        r.random_range(1..=3),
        r.random_range(1..=17),
        r.random_range(1..=17),
        r.random_range(1..=max_channels),
    ]
}

fn random_padding(r: &mut impl Rng) -> Padding {
    if r.random_bool(0.5) {
        Padding::Symmetric
    } else {
        Padding::Same
    }
}

#[test]
fn random_conv2d_shapes() {
    let mut r = rng(1);
    for case in 0..CASES {
        let shape = random_nhwc(&mut r, 4);
        let op = Conv2d {
            out_channels: r.random_range(1..=40),
            kernel: [1, 3, 5][r.random_range(0..3)],
            stride: r.random_range(1..=2),
            padding: random_padding(&mut r),
            fused: None,
        };
        let what = format!("random conv2d {shape:?} {op:?}");
        check_op(&what, OpKind::Conv2d(op), &shape, 1000 + case);
    }
}

#[test]
fn random_depthwise_shapes() {
    let mut r = rng(2);
    for case in 0..CASES {
        let shape = random_nhwc(&mut r, 70);
        let op = Depthwise {
            kernel: [1, 3, 5][r.random_range(0..3)],
            stride: r.random_range(1..=2),
            padding: random_padding(&mut r),
            fused: None,
        };
        let what = format!("random depthwise {shape:?} {op:?}");
        check_op(&what, OpKind::Depthwise(op), &shape, 2000 + case);
    }
}

#[test]
fn random_pointwise_shapes() {
    let mut r = rng(3);
    for case in 0..CASES {
        let shape = random_nhwc(&mut r, 130);
        let op = Pointwise {
            out_channels: r.random_range(1..=130),
            fused: None,
        };
        let what = format!("random pointwise {shape:?} {op:?}");
        check_op(&what, OpKind::Pointwise(op), &shape, 3000 + case);
    }
}
