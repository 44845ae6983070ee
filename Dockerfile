# The image a season's tasks run (deploy/kubernetes, deploy/aws-batch): Debian 12 slim with the
# binary, ONNX Runtime and the default models, no compilers. Built and used as
#   docker build -t episode-run:0.1.0 .
#   docker run --rm -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_REGION \
#     episode-run:0.1.0 season run --plan s3://bucket/season1/season.json --index 0
# Documented, not exercised by the tests here (no container runtime on the test machine).

# --- build: the same `make setup` and release build as on a developer's machine ----------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN make setup && cargo build --release --locked \
 && mkdir -p /opt/episode-run/lib /opt/episode-run/models \
 && cp target/release/episode-run /opt/episode-run/ \
 && cp .deps/lib/libonnxruntime.so.1.31.1 /opt/episode-run/lib/ \
 && cp .deps/models/face_detection_yunet_2023mar_dynamic.onnx .deps/models/face_recognition_sface_2021dec_fp32.onnx /opt/episode-run/models/

# --- runtime: FFmpeg 5.1's shared libraries and CA certificates for S3 over TLS -----------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libavcodec59 libavformat59 libavutil57 libswscale6 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/episode-run /opt/episode-run
# Where the binary finds lib/ and models/ (EPISODE_RUN_HOME, see the README).
ENV EPISODE_RUN_HOME=/opt/episode-run
RUN ln -s /opt/episode-run/episode-run /usr/local/bin/episode-run && useradd --system --create-home episode-run
USER episode-run
ENTRYPOINT ["episode-run"]
