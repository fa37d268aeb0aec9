#!/usr/bin/env bash
# Build the ROS 2 interfaces into .venv with the PyPI ROS 2 wheels (no ROS install):
#  - tf2_msgs (TFMessage only, upstream definition) where tf2_msgs does not import;
#  - pram_ros's msg/ and srv/. Its libraries go to .venv/lib (which the ROS wheels put on the
#    library path); its generated Python modules are copied in place into pram_ros/
#    (gitignored), so that the source tree imports `pram_ros.msg` directly.
# In a ROS 2 workspace use colcon instead (README).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
py="$venv/bin/python"
build="$root/build/msgs"
export VIRTUAL_ENV="$venv" AMENT_PREFIX_PATH="$venv" PATH="$venv/bin:$PATH"
mkdir -p "$build"

cmake_build() {  # NAME SOURCE_DIR BUILD_DIR [CMAKE ARGS...]
  local name=$1 src=$2 dir=$3 log="$3.log"
  shift 3
  echo "msgs: building $name (log: ${log#$root/})"
  if ! { cmake -S "$src" -B "$dir" -DCMAKE_INSTALL_PREFIX="$venv" -DBUILD_TESTING=OFF \
           -DPython3_EXECUTABLE="$py" "$@" \
         && cmake --build "$dir" -j "$(nproc)" \
         && cmake --install "$dir"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "error: building $name failed; full log in $log" >&2
    exit 1
  fi
}

if ! "$py" -c 'import tf2_msgs.msg' >/dev/null 2>&1; then
  cmake_build tf2_msgs "$root/interfaces/tf2_msgs" "$build/tf2_msgs"
fi

staging="$build/pram_ros_py"
rm -rf "$staging"
cmake_build pram_ros "$root" "$build/pram_ros" -DPRAM_INSTALL_PYTHON_SOURCES=OFF -DPYTHON_INSTALL_DIR="$staging"
rm -rf "$root/pram_ros/msg" "$root/pram_ros/srv" "$root"/pram_ros/*.so
cp -r "$staging/pram_ros/msg" "$root/pram_ros/msg"
cp -r "$staging/pram_ros/srv" "$root/pram_ros/srv"
cp "$staging"/pram_ros/*.so "$root/pram_ros/"
"$py" -c 'from pram_ros.msg import LocalizationStatus; from pram_ros.srv import LoadMap; from tf2_msgs.msg import TFMessage'
echo "msgs: pram_ros/msg, pram_ros/srv and tf2_msgs/msg import"
