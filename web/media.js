// The browser's two peer connections with the server (docs/signaling.md, "Media"):
// "publish", where we offer our camera and microphone, and "subscribe", where the
// server offers everyone else's tracks and we answer. Offers on subscribe are handled
// one at a time, in order. The server trickles its candidates after each description;
// each is applied after the description it follows (one promise chain per connection).

export class MediaSession extends EventTarget {
  // send(message): sends a signaling message. Events: "track" (detail: {track,
  // streams}), "state" (detail: {pc, state}).
  // audioOnly(): whether to refuse the server's video (answered `inactive`: aiortc starts
  // a sender only for a direction that sends, so the server sends no video at all).
  constructor({ iceServers, relay, send, audioOnly = () => false }) {
    super();
    this.audioOnly = audioOnly;
    this.config = {
      iceServers: iceServers || [],
      iceTransportPolicy: relay ? "relay" : "all",
      bundlePolicy: "max-bundle",
    };
    this.send = send;
    this.publishPc = null;
    this.subscribePc = null;
    this.chain = Promise.resolve(); // subscribe: offers and their candidates, in order
    this.publishChain = Promise.resolve(); // publish: answers and their candidates
    this.closed = false;
  }

  createPc(role) {
    const pc = new RTCPeerConnection(this.config);
    pc.onicecandidate = ({ candidate }) => {
      this.send({
        type: "candidate",
        pc: role,
        candidate: candidate ? candidate.candidate : null,
        sdp_mid: candidate ? candidate.sdpMid : null,
        sdp_mline_index: candidate ? candidate.sdpMLineIndex : null,
      });
    };
    pc.onconnectionstatechange = () =>
      this.dispatchEvent(new CustomEvent("state", { detail: { pc: role, state: pc.connectionState } }));
    return pc;
  }

  // Offer our tracks on the publish connection (also with none: we still subscribe);
  // video: false publishes the microphone only (audio-only mode).
  async publish(stream, { video = true } = {}) {
    const pc = this.createPc("publish");
    this.publishPc = pc;
    const tracks = stream ? stream.getTracks().filter((x) => video || x.kind !== "video") : [];
    for (const track of tracks) {
      pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      this.send({
        type: "publish",
        track_id: track.id,
        kind: track.kind,
        source: track.kind === "audio" ? "microphone" : "camera",
      });
    }
    if (tracks.length === 0) return;
    await pc.setLocalDescription(await pc.createOffer());
    this.send({ type: "offer", pc: "publish", sdp: pc.localDescription.sdp });
  }

  onAnswer(sdp) {
    this.publishChain = this.publishChain
      .then(async () => {
        if (this.publishPc && !this.closed) {
          await this.publishPc.setRemoteDescription({ type: "answer", sdp });
        }
      })
      .catch((error) => console.error("publish answer failed", error));
    return this.publishChain;
  }

  // A server candidate ({pc, candidate, sdp_mid, sdp_mline_index}); candidate null = end.
  onCandidate({ pc: role, candidate, sdp_mid: sdpMid, sdp_mline_index: sdpMLineIndex }) {
    const add = async () => {
      const pc = role === "publish" ? this.publishPc : this.subscribePc;
      if (!pc || this.closed) return;
      if (candidate) {
        await pc.addIceCandidate({ candidate, sdpMid, sdpMLineIndex });
      } else {
        // End of candidates: not needed to connect, and older browsers refuse it.
        await pc.addIceCandidate().catch(() => {});
      }
    };
    const log = (error) => console.error("server candidate refused", error);
    if (role === "publish") this.publishChain = this.publishChain.then(add).catch(log);
    else this.chain = this.chain.then(add).catch(log);
  }

  onOffer(sdp) {
    this.chain = this.chain.then(() => this.answerOffer(sdp)).catch((error) => {
      console.error("subscribe offer failed", error);
    });
    return this.chain;
  }

  async answerOffer(sdp) {
    if (this.closed) return;
    if (!this.subscribePc) {
      this.subscribePc = this.createPc("subscribe");
      this.subscribePc.ontrack = (event) =>
        this.dispatchEvent(new CustomEvent("track", { detail: event }));
    }
    const pc = this.subscribePc;
    await pc.setRemoteDescription({ type: "offer", sdp });
    const videoDirection = this.audioOnly() ? "inactive" : "recvonly";
    for (const transceiver of pc.getTransceivers()) {
      if (transceiver.receiver.track.kind === "video" && transceiver.direction !== "stopped") {
        transceiver.direction = videoDirection;
      }
    }
    await pc.setLocalDescription(await pc.createAnswer());
    this.send({ type: "answer", pc: "subscribe", sdp: pc.localDescription.sdp });
  }

  // The RTCRtpSender of our camera (screen sharing replaces its track), or null.
  videoSender() {
    if (!this.publishPc) return null;
    return this.publishPc.getSenders().find((s) => s.track && s.track.kind === "video") || null;
  }

  // Inbound audio packets received on the subscribe connection (tests, diagnostics).
  async inboundAudioPackets() {
    if (!this.subscribePc) return 0;
    let packets = 0;
    (await this.subscribePc.getStats()).forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "audio") packets += report.packetsReceived;
    });
    return packets;
  }

  close() {
    this.closed = true;
    for (const pc of [this.publishPc, this.subscribePc]) if (pc) pc.close();
    this.publishPc = this.subscribePc = null;
  }
}
