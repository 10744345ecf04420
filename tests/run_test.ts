import { registerRunSuite } from "./_run_suite.ts";
import { tempStore } from "./_helpers.ts";

registerRunSuite("local", tempStore);
