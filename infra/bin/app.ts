#!/usr/bin/env node
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { createOutboxStacks } from '../lib/outbox-app';

const app = new App();
createOutboxStacks(app);
// cdk-nag 3 runs as a CDK policy-validation plugin: any finding that is not acknowledged
// (Validations.of(construct).acknowledge, always with a reason) fails `cdk synth`.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
app.synth();
