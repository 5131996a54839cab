// Replaces the ACCESS block of bn_act.wgsl when the channel count divides by 4: every
// value is then a vec4 of 4 adjacent channels, and each load or store moves 4 channels.
alias Elem = vec4<f32>;
const CHANNELS_PER_ELEM: u32 = 4u;
fn activate_elem(x: Elem, act: u32) -> Elem {
    return activate4(x, act);
}
