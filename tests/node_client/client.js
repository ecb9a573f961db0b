// Talks to an artdet server from the same .proto: lists models, then detects objects in an image.
// usage: node client.js HOST:PORT TOKEN IMAGE MODEL_NAME
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [address, token, imagePath, modelName] = process.argv.slice(2);
const definition = protoLoader.loadSync(path.join(__dirname, "..", "..", "proto", "artdet", "v1", "artdet.proto"), {
  keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
});
const api = grpc.loadPackageDefinition(definition).artdet.v1;
const credentials = grpc.credentials.createInsecure();
const metadata = new grpc.Metadata();
metadata.add("authorization", `Bearer ${token}`);

function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 30000 }, (error, reply) =>
      error ? reject(error) : resolve(reply));
  });
}

async function main() {
  const models = await call(new api.ModelService(address, credentials), "ListModels", {});
  const detection = await call(new api.DetectionService(address, credentials), "Detect", {
    image: fs.readFileSync(imagePath), model_name: modelName, score_threshold: 0.0, max_detections: 5,
  });
  let unauthenticated = "";
  try {
    await new Promise((resolve, reject) => new api.DetectionService(address, credentials)
      .Detect({ image: fs.readFileSync(imagePath) }, new grpc.Metadata(), (e, r) => (e ? reject(e) : resolve(r))));
  } catch (error) {
    unauthenticated = grpc.status[error.code];
  }
  console.log(JSON.stringify({
    models: models.models.map((m) => ({ name: m.name, version: m.version, active: m.active })),
    detections: detection.detections.map((d) => ({ label: d.label, score: d.score, box: d.box })),
    width: detection.width, height: detection.height, model_version: detection.model_version,
    unauthenticated,
  }));
}

main().catch((error) => { console.error(error.message); process.exit(1); });
