import { bundleFixtures } from './fixtures.js';

export default bundleFixtures;
