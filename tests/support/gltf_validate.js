// node gltf_validate.js FILE.glb: print the Khronos glTF validator's report (JSON) for the file.
// Needs the npm package gltf-validator (npm install -g gltf-validator; NODE_PATH=$(npm root -g)).
const fs = require("fs");
const validator = require("gltf-validator");

const bytes = new Uint8Array(fs.readFileSync(process.argv[2]));
validator
  .validateBytes(bytes, { maxIssues: 100 })
  .then((report) => console.log(JSON.stringify(report)))
  .catch((err) => {
    console.error(String(err));
    process.exit(2);
  });
