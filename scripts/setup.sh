#!/usr/bin/env bash
# Installs what mobilenet-wgpu needs on Debian/Ubuntu, skipping what is already there: the
# Vulkan loader, Mesa's drivers (lavapipe runs Vulkan on the CPU when there is no GPU), the
# Fashion-MNIST data set package, cmake and nasm, which build the libjpeg-turbo that
# decodes JPEGs (Debian's is older than the 3.x the binding needs), and Open MPI with the
# libclang its Rust bindings are generated with (data-parallel training, `--features mpi`),
# and the SPIR-V and GLSL validators (spirv-val, glslangValidator) tests/portability.rs runs
# on every translated shader.
set -euo pipefail

packages=(libvulkan1 mesa-vulkan-drivers dataset-fashion-mnist cmake nasm openmpi-bin libopenmpi-dev libclang-dev spirv-tools glslang-tools)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "setup: ${packages[*]} already installed"
else
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
    echo "setup: installing ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust (https://rustup.rs) and run this again" >&2
    exit 1
fi
