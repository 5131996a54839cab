// The int8 GEMM of gemm_int8.wgsl for adapters whose subgroups are 8 lanes wide and cheap
// to shuffle (software Vulkan on a CPU, where every memory access is a loop over the lanes,
// so what costs is the number of loads). A workgroup is one subgroup and computes a 16x32
// block of C: lane j loads rows j and 8 + j of A and owns columns 4j .. 4j + 3 (one output
// word); rows reach every lane by shuffles. Per word of K a lane loads 2 words of A and 4
// of B (16 loads of f32 in gemm_subgroup.wgsl for the same 256 products).
//
// Two ways to multiply, for the tuner to choose:
// - `forward_subgroup_widened`: each word the lane loads unpacked once to four i32s (A's
//   rows shuffled unpacked), then plain i32 multiply-adds. Where dot4I8Packed is emulated
//   (a CPU), it unpacks both words again for every product.
// - `forward_subgroup_dot4`: the packed words shuffled and multiplied by dot4I8Packed, for
//   adapters with integer dot-product hardware.
// Both sum in i32 and give the same integers. Both also come in 32x32 tiles
// (`forward_subgroup_32_widened`, the default on CPU adapters, and
// `forward_subgroup_32_dot4`), two 16-row halves sharing each lane's words of B.
// - `forward_subgroup_32_widened_f32`: the 32x32 widened tile multiplying and summing the
//   unpacked bytes in f32, exactly where K is at most 1024 (the host offers it only there):
//   every product is at most 2^14 in magnitude, so every partial sum an integer of at
//   most 2^24. Intel cores multiply i32 vectors at half the rate of f32 ones, and there
//   this form was 30% faster; on AMD's the i32 one was.
//
// Appended to gemm_int8.wgsl (its parameters, bindings and epilogue), in a module of its
// own because subgroup operations need a device feature the base kernels must not depend on.

const SUBGROUP_LANES: u32 = 8u;
const TILE_ROWS: u32 = 16u;

struct TileI32 {
    r0: vec4<i32>, r1: vec4<i32>, r2: vec4<i32>, r3: vec4<i32>,
    r4: vec4<i32>, r5: vec4<i32>, r6: vec4<i32>, r7: vec4<i32>,
    r8: vec4<i32>, r9: vec4<i32>, r10: vec4<i32>, r11: vec4<i32>,
    r12: vec4<i32>, r13: vec4<i32>, r14: vec4<i32>, r15: vec4<i32>,
}

// Where a lane's part of the tile lies: the two rows it loads and its first column. Row
// tiles past the 65535-workgroup cap of x continue in z.
struct LaneOrigin {
    row0: u32, col: u32, a_lo: u32, a_hi: u32,
}

fn lane_origin(wg: vec3<u32>, nwg: vec3<u32>, lane: u32) -> LaneOrigin {
    return lane_origin_at((wg.x + wg.z * nwg.x) * TILE_ROWS, wg.y, lane);
}

// The lane's part of the 16 rows from `row0`, in column tile `col_tile`.
fn lane_origin_at(row0: u32, col_tile: u32, lane: u32) -> LaneOrigin {
    let last_row = p.m - 1u;
    // Out-of-range rows read a clamped, valid row and are simply not stored.
    return LaneOrigin(row0, col_tile * 4u * SUBGROUP_LANES + 4u * lane,
                      min(row0 + lane, last_row) * p.k_words,
                      min(row0 + SUBGROUP_LANES + lane, last_row) * p.k_words);
}

// The lane's four columns of B, clamped like the rows: where each column's words start.
fn lane_columns(col: u32) -> vec4<u32> {
    return min(vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u)) * p.k_words;
}

// Four steps of K of the lane's four columns: step k of column j in `sk[j]`.
struct Steps {
    s0: vec4<i32>, s1: vec4<i32>, s2: vec4<i32>, s3: vec4<i32>,
}

// acc + 4 steps of K: row `a` (unpacked, held by lane `src`) times the lane's columns.
fn mac_row(acc: vec4<i32>, a: vec4<i32>, src: u32, b: Steps) -> vec4<i32> {
    let x = subgroupShuffle(a, src);
    return acc + x.x * b.s0 + x.y * b.s1 + x.z * b.s2 + x.w * b.s3;
}

// The 16 rows' products for 4 steps of K: rows j and 8 + j arrive from lane j (`lo`, `hi`,
// unpacked), times the lane's columns `w`.
fn mac_rows16(t: TileI32, lo: vec4<i32>, hi: vec4<i32>, w: Steps) -> TileI32 {
    return TileI32(mac_row(t.r0, lo, 0u, w), mac_row(t.r1, lo, 1u, w),
                   mac_row(t.r2, lo, 2u, w), mac_row(t.r3, lo, 3u, w),
                   mac_row(t.r4, lo, 4u, w), mac_row(t.r5, lo, 5u, w),
                   mac_row(t.r6, lo, 6u, w), mac_row(t.r7, lo, 7u, w),
                   mac_row(t.r8, hi, 0u, w), mac_row(t.r9, hi, 1u, w),
                   mac_row(t.r10, hi, 2u, w), mac_row(t.r11, hi, 3u, w),
                   mac_row(t.r12, hi, 4u, w), mac_row(t.r13, hi, 5u, w),
                   mac_row(t.r14, hi, 6u, w), mac_row(t.r15, hi, 7u, w));
}

// The lane's four columns of B at word k of K, unpacked and transposed: column j's four
// steps of K become four steps of the four columns.
fn lane_steps(cols: vec4<u32>, k: u32) -> Steps {
    let x = unpack4xI8(b[cols.x + k]);
    let y = unpack4xI8(b[cols.y + k]);
    let z = unpack4xI8(b[cols.z + k]);
    let w = unpack4xI8(b[cols.w + k]);
    return Steps(vec4<i32>(x.x, y.x, z.x, w.x), vec4<i32>(x.y, y.y, z.y, w.y),
                 vec4<i32>(x.z, y.z, z.z, w.z), vec4<i32>(x.w, y.w, z.w, w.w));
}

fn accumulate_widened(at: LaneOrigin) -> TileI32 {
    let cols = lane_columns(at.col);
    var t = TileI32();
    for (var k = 0u; k < p.k_words; k++) {
        t = mac_rows16(t, unpack4xI8(a[at.a_lo + k]), unpack4xI8(a[at.a_hi + k]),
                       lane_steps(cols, k));
    }
    return t;
}

// acc + one word of K: row `a` (packed, held by lane `src`) times the lane's columns.
fn dot_row(acc: vec4<i32>, a: u32, src: u32, b: vec4<u32>) -> vec4<i32> {
    return acc + dot4x(subgroupShuffle(a, src), b);
}

// The 16 rows' products for one word of K: rows j and 8 + j arrive from lane j (`lo`,
// `hi`), times the lane's columns `w`.
fn dot_rows16(t: TileI32, lo: u32, hi: u32, w: vec4<u32>) -> TileI32 {
    return TileI32(dot_row(t.r0, lo, 0u, w), dot_row(t.r1, lo, 1u, w),
                   dot_row(t.r2, lo, 2u, w), dot_row(t.r3, lo, 3u, w),
                   dot_row(t.r4, lo, 4u, w), dot_row(t.r5, lo, 5u, w),
                   dot_row(t.r6, lo, 6u, w), dot_row(t.r7, lo, 7u, w),
                   dot_row(t.r8, hi, 0u, w), dot_row(t.r9, hi, 1u, w),
                   dot_row(t.r10, hi, 2u, w), dot_row(t.r11, hi, 3u, w),
                   dot_row(t.r12, hi, 4u, w), dot_row(t.r13, hi, 5u, w),
                   dot_row(t.r14, hi, 6u, w), dot_row(t.r15, hi, 7u, w));
}

// The lane's four columns of B at word k of K.
fn lane_words(cols: vec4<u32>, k: u32) -> vec4<u32> {
    return vec4<u32>(b[cols.x + k], b[cols.y + k], b[cols.z + k], b[cols.w + k]);
}

fn accumulate_dot4(at: LaneOrigin) -> TileI32 {
    let cols = lane_columns(at.col);
    var t = TileI32();
    for (var k = 0u; k < p.k_words; k++) {
        t = dot_rows16(t, a[at.a_lo + k], a[at.a_hi + k], lane_words(cols, k));
    }
    return t;
}

// A 32x32 block (`subgroup-32x32-dot4`): two 16-row halves that share the lane's words of
// B, so per word of K a lane loads 4 words of A and 4 of B for 128 dot products, where the
// 16x32 tile loads 6 for 64. Each sum takes its products in the same order.
const TALL_TILE_ROWS: u32 = 32u;

struct TallTileI32 {
    upper: TileI32, lower: TileI32,
}

fn accumulate_tall_dot4(upper: LaneOrigin, lower: LaneOrigin) -> TallTileI32 {
    let cols = lane_columns(upper.col);
    var t = TallTileI32();
    for (var k = 0u; k < p.k_words; k++) {
        let w = lane_words(cols, k);
        t.upper = dot_rows16(t.upper, a[upper.a_lo + k], a[upper.a_hi + k], w);
        t.lower = dot_rows16(t.lower, a[lower.a_lo + k], a[lower.a_hi + k], w);
    }
    return t;
}

// The 32x32 block with the bytes unpacked (`subgroup-32x32-widened`): per word of K a lane
// loads and unpacks 4 words of A and 4 of B for 512 multiply-adds, where the 16x32 tile
// unpacks 6 for 256.
fn accumulate_tall_widened(upper: LaneOrigin, lower: LaneOrigin) -> TallTileI32 {
    let cols = lane_columns(upper.col);
    var t = TallTileI32();
    for (var k = 0u; k < p.k_words; k++) {
        let w = lane_steps(cols, k);
        t.upper = mac_rows16(t.upper, unpack4xI8(a[upper.a_lo + k]),
                             unpack4xI8(a[upper.a_hi + k]), w);
        t.lower = mac_rows16(t.lower, unpack4xI8(a[lower.a_lo + k]),
                             unpack4xI8(a[lower.a_hi + k]), w);
    }
    return t;
}

// The widened 32x32 block summed in f32 (`subgroup-32x32-widened-f32`, K of at most 1024):
// the same loads and shuffles as accumulate_tall_widened, the i32 sums converted (exactly)
// at the end.
fn accumulate_tall_widened_f32(upper: LaneOrigin, lower: LaneOrigin) -> TallTileI32 {
    let cols = lane_columns(upper.col);
    var hi = TileF32();
    var lo = TileF32();
    for (var k = 0u; k < p.k_words; k++) {
        let w = lane_steps(cols, k);
        let wf = StepsF32(vec4<f32>(w.s0), vec4<f32>(w.s1), vec4<f32>(w.s2), vec4<f32>(w.s3));
        hi = mac_rows16_f32(hi, unpacked_f32(a[upper.a_lo + k]), unpacked_f32(a[upper.a_hi + k]),
                            wf);
        lo = mac_rows16_f32(lo, unpacked_f32(a[lower.a_lo + k]), unpacked_f32(a[lower.a_hi + k]),
                            wf);
    }
    return TallTileI32(tile_i32(hi), tile_i32(lo));
}

fn unpacked_f32(word: u32) -> vec4<f32> {
    return vec4<f32>(unpack4xI8(word));
}

// TileI32, Steps, mac_row and mac_rows16 in f32 (WGSL has no generics).
struct TileF32 {
    r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32>,
    r4: vec4<f32>, r5: vec4<f32>, r6: vec4<f32>, r7: vec4<f32>,
    r8: vec4<f32>, r9: vec4<f32>, r10: vec4<f32>, r11: vec4<f32>,
    r12: vec4<f32>, r13: vec4<f32>, r14: vec4<f32>, r15: vec4<f32>,
}

struct StepsF32 {
    s0: vec4<f32>, s1: vec4<f32>, s2: vec4<f32>, s3: vec4<f32>,
}

fn mac_row_f32(acc: vec4<f32>, a: vec4<f32>, src: u32, b: StepsF32) -> vec4<f32> {
    let x = subgroupShuffle(a, src);
    return acc + x.x * b.s0 + x.y * b.s1 + x.z * b.s2 + x.w * b.s3;
}

fn mac_rows16_f32(t: TileF32, lo: vec4<f32>, hi: vec4<f32>, w: StepsF32) -> TileF32 {
    return TileF32(mac_row_f32(t.r0, lo, 0u, w), mac_row_f32(t.r1, lo, 1u, w),
                   mac_row_f32(t.r2, lo, 2u, w), mac_row_f32(t.r3, lo, 3u, w),
                   mac_row_f32(t.r4, lo, 4u, w), mac_row_f32(t.r5, lo, 5u, w),
                   mac_row_f32(t.r6, lo, 6u, w), mac_row_f32(t.r7, lo, 7u, w),
                   mac_row_f32(t.r8, hi, 0u, w), mac_row_f32(t.r9, hi, 1u, w),
                   mac_row_f32(t.r10, hi, 2u, w), mac_row_f32(t.r11, hi, 3u, w),
                   mac_row_f32(t.r12, hi, 4u, w), mac_row_f32(t.r13, hi, 5u, w),
                   mac_row_f32(t.r14, hi, 6u, w), mac_row_f32(t.r15, hi, 7u, w));
}

fn tile_i32(t: TileF32) -> TileI32 {
    return TileI32(vec4<i32>(t.r0), vec4<i32>(t.r1), vec4<i32>(t.r2), vec4<i32>(t.r3),
                   vec4<i32>(t.r4), vec4<i32>(t.r5), vec4<i32>(t.r6), vec4<i32>(t.r7),
                   vec4<i32>(t.r8), vec4<i32>(t.r9), vec4<i32>(t.r10), vec4<i32>(t.r11),
                   vec4<i32>(t.r12), vec4<i32>(t.r13), vec4<i32>(t.r14), vec4<i32>(t.r15));
}

// The lane's output word in each of the tile's 16 rows (store_word skips what lies past C).
fn store_lane(at: LaneOrigin, t: TileI32) {
    let r = at.row0;
    let c = columns(at.col);
    store_word(r, c, t.r0);
    store_word(r + 1u, c, t.r1);
    store_word(r + 2u, c, t.r2);
    store_word(r + 3u, c, t.r3);
    store_word(r + 4u, c, t.r4);
    store_word(r + 5u, c, t.r5);
    store_word(r + 6u, c, t.r6);
    store_word(r + 7u, c, t.r7);
    store_word(r + 8u, c, t.r8);
    store_word(r + 9u, c, t.r9);
    store_word(r + 10u, c, t.r10);
    store_word(r + 11u, c, t.r11);
    store_word(r + 12u, c, t.r12);
    store_word(r + 13u, c, t.r13);
    store_word(r + 14u, c, t.r14);
    store_word(r + 15u, c, t.r15);
}

// The classifier's f32 logits, the lane's four columns in each of the tile's rows.
fn store_lane_logits(at: LaneOrigin, t: TileI32) {
    let r = at.row0;
    let c = columns(at.col);
    store_logits(r, c, t.r0);
    store_logits(r + 1u, c, t.r1);
    store_logits(r + 2u, c, t.r2);
    store_logits(r + 3u, c, t.r3);
    store_logits(r + 4u, c, t.r4);
    store_logits(r + 5u, c, t.r5);
    store_logits(r + 6u, c, t.r6);
    store_logits(r + 7u, c, t.r7);
    store_logits(r + 8u, c, t.r8);
    store_logits(r + 9u, c, t.r9);
    store_logits(r + 10u, c, t.r10);
    store_logits(r + 11u, c, t.r11);
    store_logits(r + 12u, c, t.r12);
    store_logits(r + 13u, c, t.r13);
    store_logits(r + 14u, c, t.r14);
    store_logits(r + 15u, c, t.r15);
}

// The row test returns early for the whole subgroup (the shuffles need every lane); lanes
// past the last column compute clamped copies that store_word drops.
@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_widened(@builtin(workgroup_id) wg: vec3<u32>,
                            @builtin(subgroup_invocation_id) lane: u32,
                            @builtin(num_workgroups) nwg: vec3<u32>) {
    let at = lane_origin(wg, nwg, lane);
    if at.row0 >= p.m { return; }
    store_lane(at, accumulate_widened(at));
}

@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_dot4(@builtin(workgroup_id) wg: vec3<u32>,
                         @builtin(subgroup_invocation_id) lane: u32,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let at = lane_origin(wg, nwg, lane);
    if at.row0 >= p.m { return; }
    store_lane(at, accumulate_dot4(at));
}

// The lanes' parts of a 32x32 tile: its upper and lower 16 rows.
struct TallOrigin {
    upper: LaneOrigin, lower: LaneOrigin,
}

fn tall_origin(wg: vec3<u32>, nwg: vec3<u32>, lane: u32) -> TallOrigin {
    let row0 = (wg.x + wg.z * nwg.x) * TALL_TILE_ROWS;
    return TallOrigin(lane_origin_at(row0, wg.y, lane),
                      lane_origin_at(row0 + TILE_ROWS, wg.y, lane));
}

fn store_tall(at: TallOrigin, t: TallTileI32) {
    store_lane(at.upper, t.upper);
    store_lane(at.lower, t.lower);
}

@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_32_dot4(@builtin(workgroup_id) wg: vec3<u32>,
                            @builtin(subgroup_invocation_id) lane: u32,
                            @builtin(num_workgroups) nwg: vec3<u32>) {
    let at = tall_origin(wg, nwg, lane);
    if at.upper.row0 >= p.m { return; }
    let t = accumulate_tall_dot4(at.upper, at.lower);
    store_tall(at, t);
}

@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_32_widened(@builtin(workgroup_id) wg: vec3<u32>,
                               @builtin(subgroup_invocation_id) lane: u32,
                               @builtin(num_workgroups) nwg: vec3<u32>) {
    let at = tall_origin(wg, nwg, lane);
    if at.upper.row0 >= p.m { return; }
    let t = accumulate_tall_widened(at.upper, at.lower);
    store_tall(at, t);
}

@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_32_widened_f32(@builtin(workgroup_id) wg: vec3<u32>,
                                   @builtin(subgroup_invocation_id) lane: u32,
                                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let at = tall_origin(wg, nwg, lane);
    if at.upper.row0 >= p.m { return; }
    store_tall(at, accumulate_tall_widened_f32(at.upper, at.lower));
}

// The classifier: the same products, dequantized to f32 logits (gemm_int8.wgsl's
// logits_f32).
@compute @workgroup_size(SUBGROUP_LANES)
fn logits_subgroup_widened(@builtin(workgroup_id) wg: vec3<u32>,
                           @builtin(subgroup_invocation_id) lane: u32,
                           @builtin(num_workgroups) nwg: vec3<u32>) {
    let at = lane_origin(wg, nwg, lane);
    if at.row0 >= p.m { return; }
    store_lane_logits(at, accumulate_widened(at));
}

@compute @workgroup_size(SUBGROUP_LANES)
fn logits_subgroup_dot4(@builtin(workgroup_id) wg: vec3<u32>,
                        @builtin(subgroup_invocation_id) lane: u32,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let at = lane_origin(wg, nwg, lane);
    if at.row0 >= p.m { return; }
    store_lane_logits(at, accumulate_dot4(at));
}
