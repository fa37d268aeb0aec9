"""File formats shared by every stage: files and bags in, numpy arrays and ImageSets out.

- `tum`: stamps and TUM pose files; `camera`: camera.yaml; `images`: image and depth PNGs;
- `colmap`: a COLMAP model's cameras and poses (and COLMAP's pixel convention);
- `imageset`: an `ImageSet` from a folder of images, a COLMAP model's images, or an image
  topic of a rosbag2;
- `rosbag`: rosbag2 reading, image decoding and sequence-to-bag writing (rosbags library).

Nothing here imports another pram_ros stage (only pram_ros.geometry), so world, mapping,
localization, evaluation and the node can all read the same files. The submodules are
not imported here: a TUM reader need not pull in rosbags or OpenCV.
"""
