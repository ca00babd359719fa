/** See esm-bundle-banner.mjs. */
export declare const ESM_BUNDLE_BANNER: string;
