#!/usr/bin/env bash
# Installs what mobilenet-wgpu needs on Debian/Ubuntu, skipping what is already there: the
# Vulkan loader, Mesa's drivers (lavapipe runs Vulkan on the CPU when there is no GPU), the
# Fashion-MNIST data set package, cmake and nasm, which build the libjpeg-turbo that
# decodes JPEGs (Debian's is older than the 3.x the binding needs), and Open MPI with the
# libclang its Rust bindings are generated with (data-parallel training, `--features mpi`),
# and the SPIR-V and GLSL validators (spirv-val, glslangValidator) tests/portability.rs runs
# on every translated shader. On Debian 12 lavapipe comes from bookworm-backports (Mesa 25
# instead of 22.3: training steps about 1.5x faster on the same CPU, docs/performance.md).
# Last, TensorBoard in a virtual environment (target/tb-venv, python3-venv makes it):
# tests/tensorboard.rs reads the event files a run writes with TensorBoard's own reader.
set -euo pipefail

sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi

# Debian 12 (bookworm): enable bookworm-backports once and take Mesa's Vulkan drivers from
# it, unless they already come from there. Other systems keep their distribution's Mesa.
backports_mesa() {
    [[ -r /etc/os-release ]] || return 0
    local codename
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [[ $codename == bookworm ]] || return 0
    if dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -q '~bpo12'; then
        return 0
    fi
    local sources=/etc/apt/sources.list.d/bookworm-backports.sources
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "setup: enabling bookworm-backports ($sources) for Mesa's lavapipe"
        printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' \
            'Suites: bookworm-backports' 'Components: main' \
            'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
            "${sudo[@]}" tee "$sources" >/dev/null
    fi
    echo "setup: installing mesa-vulkan-drivers from bookworm-backports"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
        -t bookworm-backports mesa-vulkan-drivers
}

packages=(libvulkan1 mesa-vulkan-drivers dataset-fashion-mnist cmake nasm openmpi-bin libopenmpi-dev libclang-dev spirv-tools glslang-tools python3-venv)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "setup: ${packages[*]} already installed"
else
    echo "setup: installing ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
fi
backports_mesa

# Skipped when the environment already imports tensorboard; a broken one is made anew.
venv="$(cd "$(dirname "$0")/.." && pwd)/target/tb-venv"
if "$venv/bin/python" -c 'import tensorboard' >/dev/null 2>&1; then
    echo "setup: tensorboard already installed in $venv"
else
    echo "setup: installing tensorboard into $venv (for tests/tensorboard.rs)"
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'tensorboard>=2.12,<3'
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust (https://rustup.rs) and run this again" >&2
    exit 1
fi
